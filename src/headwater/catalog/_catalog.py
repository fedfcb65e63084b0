"""Catalog persistence in the metadata store, with an in-process read cache.

Lookups on the query path hit an in-memory snapshot. The snapshot is keyed by the catalog
version, a counter in the metadata store bumped by every change; a process re-reads the counter
at most every ``refresh_s`` seconds, so a change made by another process (CLI, another service
replica) is seen within that time, and one made by this process immediately.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import threading
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from headwater.errors import ColumnNotFound, DatasetNotFound, InvalidInput
from headwater.metadata import (
    MetadataStore,
    catalog_version_table,
    columns_table,
    datasets_table,
)
from headwater.stores.base import TableInfo

if TYPE_CHECKING:
    from headwater.stores.base import Store

__all__ = ["Catalog", "CatalogColumn", "Dataset", "SyncReport", "normalise_name"]


MAX_NAME_LENGTH = 512
"""Longest dataset name (``<store>.<table>``) accepted."""

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control, format (zero-width, bidi controls, soft hyphen ...), surrogate, private-use,
unassigned characters and line/paragraph separators: never part of a name."""
_MIXABLE = (frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}), frozenset({"LATIN", "HAN", "BOPOMOFO"}),
            frozenset({"LATIN", "HAN", "HANGUL"}))
"""Script sets one name part may combine (Unicode TR39 "highly restrictive"); any other
mix of scripts, such as Latin with Cyrillic or Greek, is the classic look-alike name."""
_SCRIPT_ALIASES = {"CJK": "HAN", "IDEOGRAPHIC": "HAN"}


def _script(ch: str) -> str | None:
    """The script of a letter or digit (approximated by its Unicode name), None for the rest."""
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    if unicodedata.category(ch)[0] not in "LN":
        return None  # marks, punctuation, symbols: shared by every script
    word = unicodedata.name(ch, f"UNNAMED-{ord(ch):X}").split(" ")[0]
    if word == "KATAKANA-HIRAGANA":
        return None  # the prolonged sound mark, common to both
    word = word.split("-")[0] if unicodedata.category(ch) == "Nd" else word
    return _SCRIPT_ALIASES.get(word, word)


def normalise_name(name: str, *, what: str = "dataset name") -> str:
    """``name`` in Unicode NFKC form, or :class:`InvalidInput` when it could pass for another.

    Refused: leading or trailing whitespace, invisible and control characters (zero-width,
    bidi controls, soft hyphen, unassigned code points), whitespace other than the ASCII space,
    and a part (between dots) that mixes scripts (``аpp`` with a Cyrillic ``а``) beyond the
    combinations Unicode TR39 calls highly restrictive (Latin with Han and Japanese kana, with
    Han and Bopomofo, or with Han and Hangul). Compatibility forms are folded (NFKC): fullwidth
    ``ｃｕｓｔｏｍｅｒｓ`` names ``customers``. Every door that takes a dataset name (SDK write, CLI,
    HTTP, catalog registration) calls this.
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a {what} must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"a {what} must be at most {MAX_NAME_LENGTH} characters")
    if name.isascii() and name.isprintable() and name == name.strip():
        return name  # the common case: plain ASCII is one script and already NFKC
    shown = ascii(name)  # escapes make invisible characters visible in the message
    if name != name.strip():
        raise InvalidInput(f"{what} {shown} has leading or trailing whitespace")
    out = unicodedata.normalize("NFKC", name)
    for ch in out:
        cat = unicodedata.category(ch)
        if cat in _HIDDEN_CATEGORIES or (cat == "Zs" and ch != " "):
            raise InvalidInput(f"{what} {shown} contains the invisible or control character "
                               f"U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')})")
    if out != out.strip():
        raise InvalidInput(f"{what} {shown} has leading or trailing whitespace")
    for part in out.split("."):
        scripts = {s for s in map(_script, part) if s is not None}
        if len(scripts) > 1 and not any(scripts <= allowed for allowed in _MIXABLE):
            raise InvalidInput(f"{what} {shown} mixes scripts ({', '.join(sorted(scripts)).lower()}) "
                               "and could pass for another name")
    return out


@dataclass(frozen=True, slots=True)
class CatalogColumn:
    """One column of a catalogued dataset."""

    name: str
    type: str
    """Arrow type as text (``int64``, ``timestamp[us]``, ``decimal128(12, 2)``)."""
    nullable: bool = True
    tags: tuple[str, ...] = ()
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    """A catalogued dataset."""

    name: str
    """Logical name ``<store>.<table>``."""
    store: str
    table: str
    kind: str
    location: str
    columns: tuple[CatalogColumn, ...]
    primary_key: tuple[str, ...] = ()
    owner: str | None = None
    description: str | None = None
    retention_days: int | None = None
    tier: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> CatalogColumn:
        """The column called ``name`` (case-insensitive); ``ColumnNotFound`` otherwise."""
        low = name.lower()
        for c in self.columns:
            if c.name.lower() == low:
                return c
        raise ColumnNotFound(
            f"{self.name} has no column {name!r}; its columns are {', '.join(self.column_names)}",
            dataset=self.name,
            column=name,
        )

    @property
    def column_names(self) -> list[str]:
        """Column names in table order."""
        return [c.name for c in self.columns]

    def tagged(self, pattern: str) -> list[CatalogColumn]:
        """Columns carrying a tag matching a glob (``pii.*``)."""
        return [c for c in self.columns if any(fnmatch.fnmatchcase(t, pattern) for t in c.tags)]


@dataclass(slots=True)
class SyncReport:
    """What ``Catalog.sync`` changed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Catalog:
    """Datasets by logical name, stored in the metadata store."""

    def __init__(self, meta: MetadataStore, *, refresh_s: float = 2.0) -> None:
        self.meta = meta
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._snapshot: dict[str, Dataset] | None = None
        self._version = -1
        self._checked_at = 0.0

    # -- reads --------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """The catalog version of the current snapshot (changes whenever the catalog does)."""
        self._datasets()
        return self._version

    def _read_version(self, conn: sa.Connection) -> int:
        return int(conn.execute(sa.select(catalog_version_table.c.version)).scalar_one())

    def _datasets(self) -> dict[str, Dataset]:
        now = time.monotonic()
        snap = self._snapshot
        if snap is not None and now - self._checked_at < self.refresh_s:
            return snap
        with self._lock:
            with self.meta.connect() as conn:
                version = self._read_version(conn)
                if self._snapshot is None or version != self._version:
                    self._snapshot = self._load(conn)
                    self._version = version
            self._checked_at = now
            return self._snapshot

    def _load(self, conn: sa.Connection) -> dict[str, Dataset]:
        cols: dict[int, list[CatalogColumn]] = {}
        for r in conn.execute(sa.select(columns_table).order_by(columns_table.c.dataset_id, columns_table.c.position)):
            cols.setdefault(r.dataset_id, []).append(
                CatalogColumn(r.name, r.type, bool(r.nullable), tuple(r.tags or ()), r.description)
            )
        out = {}
        for r in conn.execute(sa.select(datasets_table)):
            out[r.name] = Dataset(
                name=r.name, store=r.store, table=r.table_name, kind=r.kind, location=r.location,
                columns=tuple(cols.get(r.id, ())), primary_key=tuple(r.primary_key or ()),
                owner=r.owner, description=r.description, retention_days=r.retention_days,
                tier=r.tier, properties=dict(r.properties or {}),
            )
        return out

    def invalidate(self) -> None:
        """Forget the snapshot; the next lookup re-reads the metadata store."""
        self._checked_at = 0.0
        self._snapshot = None

    def list(self, pattern: str = "*") -> list[Dataset]:
        """Datasets whose logical name matches a glob, sorted by name."""
        return [d for n, d in sorted(self._datasets().items()) if fnmatch.fnmatchcase(n, pattern)]

    def get(self, name: str) -> Dataset:
        """One dataset by logical name (case-insensitive); ``DatasetNotFound`` otherwise."""
        snap = self._datasets()
        if not name.isascii():
            name = unicodedata.normalize("NFKC", name)  # names are catalogued in NFKC form
        ds = snap.get(name) or snap.get(name.lower())
        if ds is None:
            low = name.lower()
            ds = next((d for n, d in snap.items() if n.lower() == low), None)
        if ds is None:
            hint = ""
            close = [n for n in snap if n.split(".")[-1].lower() == low.split(".")[-1]]
            if close:
                hint = f"; did you mean {', '.join(sorted(close))}?"
            elif "." not in name:
                hint = "; name datasets as <store>.<table>"
            else:
                hint = "; run `headwater catalog sync` if it exists in the store"
            raise DatasetNotFound(f"unknown dataset {name!r}{hint}", dataset=name)
        return ds

    def find(self, name: str) -> Dataset | None:
        """Like :meth:`get` but returns None."""
        try:
            return self.get(name)
        except DatasetNotFound:
            return None

    # -- writes -------------------------------------------------------------------------
    def _bump(self, conn: sa.Connection) -> None:
        conn.execute(sa.update(catalog_version_table).values(version=catalog_version_table.c.version + 1))
        self.invalidate()

    def register(self, store: str, info: TableInfo, *, kind: str, owner: str | None = None,
                 description: str | None = None) -> tuple[Dataset, str]:
        """Add or refresh a dataset from introspection; keeps tags, owner and retention.

        Returns the dataset and what happened: ``added``, ``updated`` or ``unchanged``.
        """
        name = f"{store}.{info.name}"
        if normalise_name(name) != name:
            raise InvalidInput(f"dataset name {ascii(name)} is not in Unicode NFKC form "
                               f"({ascii(normalise_name(name))}); rename the table in its store")
        with self.meta.begin() as conn:
            row = conn.execute(sa.select(datasets_table).where(datasets_table.c.name == name)).first()
            now = _now()
            if row is None:
                ds_id = conn.execute(
                    sa.insert(datasets_table).values(
                        name=name, store=store, table_name=info.name, kind=kind, location=info.location,
                        primary_key=list(info.primary_key), owner=owner, description=description,
                        properties={}, created_at=now, updated_at=now,
                    )
                ).inserted_primary_key[0]
                old_cols: dict[str, Any] = {}
                outcome = "added"
            else:
                ds_id = row.id
                old_cols = {r.name: r for r in conn.execute(
                    sa.select(columns_table).where(columns_table.c.dataset_id == ds_id))}
                outcome = "unchanged"
                # A key declared in the catalog (the store has none) survives re-syncs.
                key = list(info.primary_key) or list(row.primary_key or [])
                if row.location != info.location or list(row.primary_key or []) != key:
                    outcome = "updated"
                    conn.execute(sa.update(datasets_table).where(datasets_table.c.id == ds_id).values(
                        location=info.location, primary_key=key, updated_at=now))
            new_cols = [(i, c.name, str(c.type), c.nullable) for i, c in enumerate(info.columns)]
            same = len(old_cols) == len(new_cols) and all(
                n in old_cols and old_cols[n].type == t and bool(old_cols[n].nullable) == nl
                and old_cols[n].position == i for i, n, t, nl in new_cols)
            if not same:
                if outcome == "unchanged":
                    outcome = "updated"
                conn.execute(sa.delete(columns_table).where(columns_table.c.dataset_id == ds_id))
                conn.execute(sa.insert(columns_table), [
                    {"dataset_id": ds_id, "name": n, "position": i, "type": t, "nullable": nl,
                     "tags": list(old_cols[n].tags) if n in old_cols else [],
                     "description": old_cols[n].description if n in old_cols else None}
                    for i, n, t, nl in new_cols
                ])
                conn.execute(sa.update(datasets_table).where(datasets_table.c.id == ds_id).values(updated_at=now))
            if outcome != "unchanged":
                self._bump(conn)
        return self.get(name), outcome

    def remove(self, name: str) -> None:
        """Drop a dataset from the catalog (the data in the store is untouched)."""
        with self.meta.begin() as conn:
            ds_id = conn.execute(sa.select(datasets_table.c.id).where(datasets_table.c.name == name)).scalar()
            if ds_id is None:
                raise DatasetNotFound(f"unknown dataset {name!r}", dataset=name)
            conn.execute(sa.delete(columns_table).where(columns_table.c.dataset_id == ds_id))
            conn.execute(sa.delete(datasets_table).where(datasets_table.c.id == ds_id))
            self._bump(conn)

    def update(self, name: str, **fields: Any) -> Dataset:
        """Set owner, description, retention_days, tier, properties or a declared primary_key."""
        allowed = {"owner", "description", "retention_days", "tier", "properties", "primary_key"}
        bad = set(fields) - allowed
        if bad:
            raise InvalidInput(f"cannot set {sorted(bad)} on a dataset; settable: {sorted(allowed)}")
        ds = self.get(name)
        if "primary_key" in fields:
            # A declared unique key (e.g. for tables whose store declares none): paging uses it.
            fields["primary_key"] = [ds.column(c).name for c in fields["primary_key"] or []]
        with self.meta.begin() as conn:
            conn.execute(sa.update(datasets_table).where(datasets_table.c.name == ds.name)
                         .values(updated_at=_now(), **fields))
            self._bump(conn)
        return self.get(ds.name)

    def set_tags(self, name: str, column: str, tags: Iterable[str], *, replace: bool = False) -> Dataset:
        """Add (or replace) tags on one column, e.g. ``pii.email``."""
        ds = self.get(name)
        col = ds.column(column)
        new = sorted(set(tags) if replace else set(col.tags) | set(tags))
        with self.meta.begin() as conn:
            ds_id = conn.execute(sa.select(datasets_table.c.id).where(datasets_table.c.name == ds.name)).scalar_one()
            conn.execute(sa.update(columns_table).where(
                (columns_table.c.dataset_id == ds_id) & (columns_table.c.name == col.name)).values(tags=new))
            self._bump(conn)
        return self.get(ds.name)

    def sync(self, stores: Mapping[str, Store], *, only: Iterable[str] | None = None,
             prune: bool = True) -> SyncReport:
        """Introspect stores and bring the catalog in line; unreachable stores are reported."""
        report = SyncReport()
        wanted = set(only) if only else None
        for store_name, store in stores.items():
            if wanted is not None and store_name not in wanted:
                continue
            try:
                infos = store.tables()
            except Exception as err:  # noqa: BLE001 - reported per store, others go on
                report.errors[store_name] = str(err)
                continue
            seen = set()
            for info in infos:
                try:
                    ds, outcome = self.register(store_name, info, kind=store.kind)
                except InvalidInput as err:
                    # A table whose name could pass for another stays out of the catalog (and
                    # so unreadable); the rest of the store is still synced.
                    report.errors[ascii(f"{store_name}.{info.name}")] = str(err)
                    continue
                seen.add(ds.name)
                getattr(report, outcome).append(ds.name)
            if prune:
                for ds in self.list(f"{store_name}.*"):
                    if ds.name not in seen:
                        self.remove(ds.name)
                        report.removed.append(ds.name)
        return report


def arrow_type_from_text(text: str) -> pa.DataType:
    """Best-effort inverse of ``str(pa.DataType)`` for catalog types."""
    simple = {
        "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
        "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
        "float": pa.float32(), "double": pa.float64(), "halffloat": pa.float16(),
        "bool": pa.bool_(), "string": pa.string(), "large_string": pa.large_string(),
        "binary": pa.binary(), "large_binary": pa.large_binary(), "date32[day]": pa.date32(),
        "null": pa.null(),
    }
    if text in simple:
        return simple[text]
    if text.startswith("timestamp["):
        inner = text[len("timestamp["):-1]
        unit, _, tz = inner.partition(", tz=")
        return pa.timestamp(unit, tz or None)
    if text.startswith("decimal128("):
        p, s = text[len("decimal128("):-1].split(",")
        return pa.decimal128(int(p), int(s))
    if text.startswith("time64["):
        return pa.time64(text[len("time64["):-1])
    return pa.string()
