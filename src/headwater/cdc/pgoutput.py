"""A decoder for PostgreSQL's ``pgoutput`` logical replication protocol, version 1.

The walsender sends one pgoutput message per ``XLogData`` payload. :class:`PgOutputDecoder`
turns each into a small dataclass (:class:`Begin`, :class:`Commit`, :class:`Relation`,
:class:`Insert`, :class:`Update`, :class:`Delete`, :class:`Truncate`, plus :class:`Origin`,
:class:`TypeMessage` and :class:`LogicalMessage`), keeping the relation cache that row
messages refer to by OID.

Tuple data: ``'n'`` is SQL NULL (``None``), ``'t'`` a value in text format converted by its
type OID (:func:`convert`), ``'u'`` an unchanged TOASTed value the server did not send -- it
is returned as the :data:`UNCHANGED_TOAST` sentinel and must never reach a sink as a value.

Only the message layouts are decoded here; nothing touches a connection. The layouts are those
of the PostgreSQL documentation, "Logical Replication Message Formats".
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from headwater.cdc.errors import DecodeError

__all__ = [
    "PG_EPOCH",
    "UNCHANGED_TOAST",
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Insert",
    "LogicalMessage",
    "Origin",
    "PgOutputDecoder",
    "Relation",
    "Truncate",
    "TypeMessage",
    "Update",
    "convert",
    "format_lsn",
    "parse_lsn",
    "pg_timestamp",
]

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""Zero of PostgreSQL's timestamps (microseconds since 2000-01-01 UTC)."""


class _Unchanged:
    """Marker for a TOASTed value the server did not send because it did not change."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __reduce__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST = _Unchanged()
"""Stands for an unchanged TOASTed column (tuple kind ``'u'``); never a real value."""


def pg_timestamp(micros: int) -> datetime:
    """A protocol timestamp (microseconds since 2000-01-01 UTC) as an aware datetime."""
    return PG_EPOCH + timedelta(microseconds=micros)


def format_lsn(lsn: int) -> str:
    """``0x16B3748`` -> ``'0/16B3748'`` (the text form PostgreSQL prints)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """``'0/16B3748'`` -> the LSN as an integer."""
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


# -- messages --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Column:
    """One column of a :class:`Relation`."""

    name: str
    type_oid: int
    type_modifier: int
    key: bool
    """Part of the replica identity (the primary key by default)."""


@dataclass(frozen=True, slots=True)
class Relation:
    """``R``: the shape of a table, sent before its first row message in a session and again
    whenever it changes."""

    oid: int
    schema: str
    name: str
    replica_identity: str
    """``d`` default (primary key), ``n`` nothing, ``f`` full, ``i`` index."""
    columns: tuple[Column, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Names of the replica-identity columns."""
        return tuple(c.name for c in self.columns if c.key)

    @property
    def qualified(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.name}"

    def shape(self) -> tuple[tuple[str, int], ...]:
        """Column names and type OIDs: what a schema change changes."""
        return tuple((c.name, c.type_oid) for c in self.columns)


@dataclass(frozen=True, slots=True)
class Begin:
    """``B``: a transaction starts; ``final_lsn`` is the LSN of its commit record."""

    final_lsn: int
    commit_ts: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    """``C``: the transaction ends; confirm ``end_lsn`` once its changes are safe."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    """``O``: the transaction came from another node through replication origin ``name``."""

    lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class TypeMessage:
    """``Y``: a user-defined type a following relation uses."""

    oid: int
    schema: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    """``I``: a new row."""

    relation: Relation
    new: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Update:
    """``U``: a changed row. ``old`` is the old key (identity ``d``/``i``, only when the key
    changed) or the whole old row (identity ``f``); None otherwise."""

    relation: Relation
    new: dict[str, Any]
    old: dict[str, Any] | None = None
    old_kind: str | None = None
    """``K`` (key columns only) or ``O`` (the full old row)."""


@dataclass(frozen=True, slots=True)
class Delete:
    """``D``: a removed row; ``old`` holds its key (or the full row under identity ``f``)."""

    relation: Relation
    old: dict[str, Any]
    old_kind: str = "K"


@dataclass(frozen=True, slots=True)
class Truncate:
    """``T``: tables emptied."""

    relations: tuple[Relation, ...]
    cascade: bool = False
    restart_identity: bool = False


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """``M``: a ``pg_logical_emit_message`` payload (only with the ``messages`` option)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes = field(repr=False)


Message = Begin | Commit | Origin | Relation | TypeMessage | Insert | Update | Delete | Truncate | LogicalMessage

# -- type conversion ---------------------------------------------------------------------------


def _bool(text: str) -> bool:
    return text == "t"


def _float(text: str) -> float:
    return float(text)  # 'NaN', 'Infinity', '-Infinity' parse as Python floats


def _numeric(text: str) -> Decimal:
    return Decimal(text)


def _bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    # escape format (bytea_output = 'escape')
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def _date(text: str) -> date | str:
    try:
        return date.fromisoformat(text)
    except ValueError:  # 'infinity', BC dates
        return text


def _timestamp(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _timestamptz(text: str) -> datetime | str:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _time(text: str) -> time | str:
    try:
        return time.fromisoformat(text)
    except ValueError:
        return text


def _array(element: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return _parse_array(text, element)

    return parse


def _parse_array(text: str, element: Callable[[str], Any]) -> Any:
    """A PostgreSQL array literal (``{1,2,NULL}``, ``{{a,b},{"c d",e}}``) as nested lists."""
    if text.startswith("["):  # explicit bounds: '[0:1]={1,2}'
        text = text[text.index("=") + 1:]
    pos = 0

    def parse_level() -> list[Any]:
        nonlocal pos
        assert text[pos] == "{"
        pos += 1
        out: list[Any] = []
        if text[pos] == "}":
            pos += 1
            return out
        while True:
            ch = text[pos]
            if ch == "{":
                out.append(parse_level())
            elif ch == '"':
                pos += 1
                buf = []
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    buf.append(text[pos])
                    pos += 1
                pos += 1
                out.append(element("".join(buf)))
            else:
                start = pos
                while text[pos] not in ",}":
                    pos += 1
                raw = text[start:pos]
                out.append(None if raw == "NULL" else element(raw))
            if text[pos] == ",":
                pos += 1
                continue
            pos += 1  # '}'
            return out

    return parse_level()


def _json(text: str) -> Any:
    return json.loads(text)


_SCALARS: dict[int, Callable[[str], Any]] = {
    16: _bool,
    17: _bytea,
    18: str,  # "char"
    19: str,  # name
    20: int,
    21: int,
    23: int,
    25: str,
    26: int,  # oid
    114: _json,
    700: _float,
    701: _float,
    1042: str,  # bpchar
    1043: str,  # varchar
    1082: _date,
    1083: _time,
    1114: _timestamp,
    1184: _timestamptz,
    1700: _numeric,
    2950: str,  # uuid
    3802: _json,  # jsonb
}
_ARRAYS = {
    1000: 16, 1001: 17, 1005: 21, 1007: 23, 1009: 25, 1014: 1042, 1015: 1043, 1016: 20,
    1021: 700, 1022: 701, 1115: 1114, 1182: 1082, 1185: 1184, 1231: 1700, 2951: 2950,
    199: 114, 3807: 3802,
}
CONVERTERS: dict[int, Callable[[str], Any]] = dict(_SCALARS)
"""Type OID -> text-format parser; types not listed stay strings (interval, inet, enums ...)."""
CONVERTERS.update({arr: _array(_SCALARS[elem]) for arr, elem in _ARRAYS.items()})


def convert(type_oid: int, text: str, converters: dict[int, Callable[[str], Any]] | None = None) -> Any:
    """The Python value of ``text`` (PostgreSQL text output) of type ``type_oid``."""
    fn = (CONVERTERS if converters is None else converters).get(type_oid)
    if fn is None:
        return text
    try:
        return fn(text)
    except (ValueError, IndexError, AssertionError):
        return text


# -- the decoder ------------------------------------------------------------------------------
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_BEGIN = struct.Struct("!qqI")
_COMMIT = struct.Struct("!bqqq")
_COLHDR = struct.Struct("!b")
_OIDMOD = struct.Struct("!Ii")


class PgOutputDecoder:
    """Decodes pgoutput v1 messages; keeps the relations seen so far (by OID).

    ``convert_values=False`` leaves ``'t'`` values as strings; ``converters`` replaces the
    OID -> parser table (:data:`CONVERTERS`; unlisted types stay strings).
    """

    def __init__(self, *, convert_values: bool = True,
                 converters: dict[int, Callable[[str], Any]] | None = None) -> None:
        self.relations: dict[int, Relation] = {}
        self.types: dict[int, TypeMessage] = {}
        self.convert_values = convert_values
        self.converters = CONVERTERS if converters is None else converters
        self._plans: dict[int, tuple[Relation, list[tuple[str, Callable[[str], Any] | None]]]] = {}

    def decode(self, payload: bytes | bytearray | memoryview) -> Message:
        """One message; :class:`DecodeError` for a truncated or unknown one."""
        buf = bytes(payload)
        if not buf:
            raise DecodeError("empty pgoutput message")
        kind = buf[0]
        try:
            if kind == 0x42:  # B
                final_lsn, ts, xid = _BEGIN.unpack_from(buf, 1)
                return Begin(final_lsn, pg_timestamp(ts), xid)
            if kind == 0x43:  # C
                flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(buf, 1)
                return Commit(flags, commit_lsn, end_lsn, pg_timestamp(ts))
            if kind == 0x49:  # I
                rel = self._relation(_U32.unpack_from(buf, 1)[0])
                if buf[5] != 0x4E:
                    raise DecodeError(f"insert: expected 'N', got {chr(buf[5])!r}")
                new, _ = self._tuple(buf, 6, rel)
                return Insert(rel, new)
            if kind == 0x55:  # U
                rel = self._relation(_U32.unpack_from(buf, 1)[0])
                pos = 5
                old = old_kind = None
                if buf[pos] in (0x4B, 0x4F):  # K / O
                    old_kind = chr(buf[pos])
                    old, pos = self._tuple(buf, pos + 1, rel)
                if buf[pos] != 0x4E:
                    raise DecodeError(f"update: expected 'N', got {chr(buf[pos])!r}")
                new, _ = self._tuple(buf, pos + 1, rel)
                return Update(rel, new, old, old_kind)
            if kind == 0x44:  # D
                rel = self._relation(_U32.unpack_from(buf, 1)[0])
                old_kind = chr(buf[5])
                if old_kind not in ("K", "O"):
                    raise DecodeError(f"delete: expected 'K' or 'O', got {old_kind!r}")
                old, _ = self._tuple(buf, 6, rel)
                return Delete(rel, old, old_kind)
            if kind == 0x52:  # R
                return self._relation_message(buf)
            if kind == 0x54:  # T
                nrel = _I32.unpack_from(buf, 1)[0]
                options = buf[5]
                oids = struct.unpack_from(f"!{nrel}I", buf, 6)
                return Truncate(tuple(self._relation(o) for o in oids), bool(options & 1), bool(options & 2))
            if kind == 0x4F:  # O
                lsn = struct.unpack_from("!q", buf, 1)[0]
                name, _ = _cstring(buf, 9)
                return Origin(lsn, name)
            if kind == 0x59:  # Y
                oid = _U32.unpack_from(buf, 1)[0]
                schema, pos = _cstring(buf, 5)
                name, _ = _cstring(buf, pos)
                msg = TypeMessage(oid, schema, name)
                self.types[oid] = msg
                return msg
            if kind == 0x4D:  # M
                flags = buf[1]
                lsn = struct.unpack_from("!q", buf, 2)[0]
                prefix, pos = _cstring(buf, 10)
                length = _I32.unpack_from(buf, pos)[0]
                return LogicalMessage(bool(flags & 1), lsn, prefix, buf[pos + 4:pos + 4 + length])
        except (struct.error, IndexError, UnicodeDecodeError) as err:
            raise DecodeError(f"truncated or malformed pgoutput {chr(kind)!r} message: {err}") from None
        raise DecodeError(f"unknown pgoutput message type {chr(kind)!r} (protocol v1 decoder)")

    def _relation(self, oid: int) -> Relation:
        try:
            return self.relations[oid]
        except KeyError:
            raise DecodeError(f"row message for relation {oid} before its Relation message") from None

    def _relation_message(self, buf: bytes) -> Relation:
        oid = _U32.unpack_from(buf, 1)[0]
        schema, pos = _cstring(buf, 5)
        name, pos = _cstring(buf, pos)
        identity = chr(buf[pos])
        ncols = _I16.unpack_from(buf, pos + 1)[0]
        pos += 3
        cols = []
        for _ in range(ncols):
            flags = buf[pos]
            cname, pos = _cstring(buf, pos + 1)
            type_oid, typmod = _OIDMOD.unpack_from(buf, pos)
            pos += 8
            cols.append(Column(cname, type_oid, typmod, bool(flags & 1)))
        rel = Relation(oid, schema, name, identity, tuple(cols))
        self.relations[oid] = rel
        return rel

    def _plan(self, rel: Relation) -> list[tuple[str, Callable[[str], Any] | None]]:
        """(name, text parser) per column of ``rel``, kept until its next Relation message."""
        conv = self.convert_values
        table = self.converters
        plan = [(c.name, table.get(c.type_oid) if conv else None) for c in rel.columns]
        self._plans[rel.oid] = (rel, plan)
        return plan

    def _tuple(self, buf: bytes, pos: int, rel: Relation) -> tuple[dict[str, Any], int]:
        ncols = _I16.unpack_from(buf, pos)[0]
        pos += 2
        cached = self._plans.get(rel.oid)
        plan = cached[1] if cached is not None and cached[0] is rel else self._plan(rel)
        if ncols > len(plan):
            raise DecodeError(f"tuple of {rel.qualified} has {ncols} columns, the relation {len(plan)}")
        unpack = _I32.unpack_from
        out: dict[str, Any] = {}
        for i in range(ncols):
            name, fn = plan[i]
            kind = buf[pos]
            if kind == 0x74:  # t
                end = pos + 5 + unpack(buf, pos + 1)[0]
                text = buf[pos + 5:end].decode()
                pos = end
                if fn is None:
                    out[name] = text
                else:
                    try:
                        out[name] = fn(text)
                    except (ValueError, IndexError, AssertionError):
                        out[name] = text
            elif kind == 0x6E:  # n
                out[name] = None
                pos += 1
            elif kind == 0x75:  # u
                out[name] = UNCHANGED_TOAST
                pos += 1
            elif kind == 0x62:  # b: binary format, only with the 'binary' option
                end = pos + 5 + unpack(buf, pos + 1)[0]
                out[name] = buf[pos + 5:end]
                pos = end
            else:
                raise DecodeError(f"unknown tuple data kind {chr(kind)!r} in {rel.qualified}")
        if pos > len(buf):
            raise DecodeError(f"a value of {rel.qualified} is truncated")
        return out, pos


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(0, pos)
    return buf[pos:end].decode(), end + 1
