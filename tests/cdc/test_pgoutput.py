"""pgoutput v1 decoding from crafted messages (layouts from the PostgreSQL docs)."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from headwater.cdc.errors import DecodeError
from headwater.cdc.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgOutputDecoder,
    Relation,
    Truncate,
    TypeMessage,
    Update,
    convert,
    format_lsn,
    parse_lsn,
)

TS = 1_000_000 * 86_400  # one day after 2000-01-01


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def relation(oid: int = 16384, identity: bytes = b"d") -> bytes:
    cols = [(1, "id", 23), (0, "name", 25), (0, "amount", 1700), (0, "body", 25), (0, "at", 1184)]
    out = b"R" + struct.pack("!I", oid) + cstr("public") + cstr("orders") + identity
    out += struct.pack("!h", len(cols))
    for flags, name, type_oid in cols:
        out += struct.pack("!b", flags) + cstr(name) + struct.pack("!Ii", type_oid, -1)
    return out


def tup(*values: object) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED_TOAST:
            out += b"u"
        else:
            raw = str(v).encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


@pytest.fixture
def dec() -> PgOutputDecoder:
    d = PgOutputDecoder()
    rel = d.decode(relation())
    assert isinstance(rel, Relation)
    return d


def test_begin_commit() -> None:
    d = PgOutputDecoder()
    b = d.decode(b"B" + struct.pack("!qqI", 0x1_0000_0010, TS, 742))
    assert b == Begin(0x1_0000_0010, datetime(2000, 1, 2, tzinfo=UTC), 742)
    c = d.decode(b"C" + struct.pack("!bqqq", 0, 0x10, 0x20, TS))
    assert c == Commit(0, 0x10, 0x20, datetime(2000, 1, 2, tzinfo=UTC))


def test_relation(dec: PgOutputDecoder) -> None:
    rel = dec.relations[16384]
    assert rel.qualified == "public.orders"
    assert rel.replica_identity == "d"
    assert rel.key_columns == ("id",)
    assert [c.type_oid for c in rel.columns] == [23, 25, 1700, 25, 1184]


def test_insert_converts_by_oid(dec: PgOutputDecoder) -> None:
    msg = dec.decode(b"I" + struct.pack("!I", 16384) + b"N"
                     + tup(7, "héllo", "12.50", None, "2024-05-01 10:00:00.5+00"))
    assert isinstance(msg, Insert)
    assert msg.new == {"id": 7, "name": "héllo", "amount": Decimal("12.50"), "body": None,
                       "at": datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)}


def test_update_with_unchanged_toast_and_old_key(dec: PgOutputDecoder) -> None:
    plain = dec.decode(b"U" + struct.pack("!I", 16384) + b"N" + tup(1, "a", "1", UNCHANGED_TOAST, None))
    assert isinstance(plain, Update) and plain.old is None
    assert plain.new["body"] is UNCHANGED_TOAST
    keyed = dec.decode(b"U" + struct.pack("!I", 16384) + b"K" + tup(1, None, None, None, None)
                       + b"N" + tup(2, "a", "1", "x", None))
    assert keyed.old_kind == "K" and keyed.old["id"] == 1 and keyed.new["id"] == 2
    full = dec.decode(b"U" + struct.pack("!I", 16384) + b"O" + tup(1, "old", "1", "x", None)
                      + b"N" + tup(1, "new", "1", "x", None))
    assert full.old_kind == "O" and full.old["name"] == "old"


def test_delete(dec: PgOutputDecoder) -> None:
    msg = dec.decode(b"D" + struct.pack("!I", 16384) + b"K" + tup(9, None, None, None, None))
    assert isinstance(msg, Delete) and msg.old["id"] == 9 and msg.old_kind == "K"


def test_truncate(dec: PgOutputDecoder) -> None:
    msg = dec.decode(b"T" + struct.pack("!ib", 1, 3) + struct.pack("!I", 16384))
    assert isinstance(msg, Truncate)
    assert msg.relations[0].name == "orders" and msg.cascade and msg.restart_identity


def test_origin_type_message() -> None:
    d = PgOutputDecoder()
    assert d.decode(b"O" + struct.pack("!q", 5) + cstr("node1")) == Origin(5, "node1")
    assert d.decode(b"Y" + struct.pack("!I", 99) + cstr("public") + cstr("mood")) == TypeMessage(99, "public", "mood")
    m = d.decode(b"M" + struct.pack("!bq", 1, 77) + cstr("hb") + struct.pack("!i", 3) + b"abc")
    assert m == LogicalMessage(True, 77, "hb", b"abc")


def test_errors(dec: PgOutputDecoder) -> None:
    with pytest.raises(DecodeError, match="before its Relation"):
        dec.decode(b"I" + struct.pack("!I", 1) + b"N" + tup(1))
    with pytest.raises(DecodeError, match="unknown pgoutput message"):
        dec.decode(b"Z")
    with pytest.raises(DecodeError, match="truncated"):
        dec.decode(b"B\x00\x01")
    with pytest.raises(DecodeError):
        dec.decode(b"I" + struct.pack("!I", 16384) + b"N" + struct.pack("!h", 1) + b"t" + struct.pack("!i", 10) + b"ab")
    with pytest.raises(DecodeError, match="empty"):
        dec.decode(b"")


@pytest.mark.parametrize(("oid", "text", "value"), [
    (16, "t", True), (16, "f", False), (20, "-9007199254740993", -9007199254740993),
    (701, "1.5", 1.5), (1700, "NaN", Decimal("NaN")), (17, "\\x00ff", b"\x00\xff"),
    (114, '{"a": [1]}', {"a": [1]}), (3802, "[1, 2]", [1, 2]), (1082, "2024-02-29", date(2024, 2, 29)),
    (1082, "infinity", "infinity"), (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    (1007, "{1,NULL,3}", [1, None, 3]), (1009, '{a,"b,c","d\\"e",NULL}', ["a", "b,c", 'd"e', None]),
    (1007, "{{1,2},{3,4}}", [[1, 2], [3, 4]]), (1007, "{}", []), (1186, "1 day", "1 day"),
])
def test_convert(oid: int, text: str, value: object) -> None:
    got = convert(oid, text)
    if isinstance(value, Decimal) and value.is_nan():
        assert got.is_nan()
    else:
        assert got == value


def test_lsn_text() -> None:
    assert format_lsn(0x1_016B_3748) == "1/16B3748"
    assert parse_lsn("1/16B3748") == 0x1_016B_3748
