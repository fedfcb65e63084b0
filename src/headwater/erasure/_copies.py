"""Copies of a data subject that the platform writes for itself, beside the datasets.

* **CDC change tables** (:func:`headwater.cdc.sqlite.subject_changes`): a SQLite store with a
  capture change table holds full before/after row images until the bus acknowledges them, and
  the erasure's own delete is captured too. One target per such store that holds an erasable
  dataset; ``columns`` are ``<table>.<column>`` pairs. Placed after the datasets, so the
  changes their erasure produced are pruned as well.
* **Retention archives** (:func:`headwater.retention._archive.subject_rows_in_archives`): one
  target per Parquet store; ``columns`` are ``<dataset>.<column>`` pairs of every erasable
  dataset (retention may have archived any of them).
* **Subject keys** (:mod:`headwater.subject_keys`): the keys that seal the subject's fields in
  event topics are shredded (idempotent, always) for the subject's namespace
  (``app.customers.id``) and the namespace of every copy of the key; verified when no such key
  exists. A key created again after the shred (an event sealed since) re-opens the target.
* **Storage** (:mod:`headwater.erasure._scrub`): one target per store the job touches, plus
  the metadata database (dead letters, subject keys) -- run last, so that no recoverable bytes
  of deleted or changed rows stay in files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.config import (
    DuckDBConfig,
    ParquetConfig,
    PostgresConfig,
    SnowflakeConfig,
    SQLiteConfig,
)
from headwater.erasure._model import METADATA, SUBJECT_KEYS, ErasureTarget, TargetKind
from headwater.retention.holds import Subject

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["count_copy", "erase_copy", "namespaces", "platform_copies", "storage_name"]


def storage_name(store: str | None) -> str:
    """The storage step's target name: ``storage:<store>`` (``storage:headwater.metadata``)."""
    return f"storage:{store or METADATA}"


def _kind(platform: Platform, store: str) -> str | None:
    cfg = platform.config.stores.get(store)
    for cls, kind in ((SQLiteConfig, "sqlite"), (DuckDBConfig, "duckdb"), (PostgresConfig, "postgres"),
                      (ParquetConfig, "parquet"), (SnowflakeConfig, "snowflake")):
        if isinstance(cfg, cls):
            return kind
    return None


def namespaces(subject: Subject, datasets: list[Any]) -> list[str]:
    """Subject-key namespaces: the subject's own, then every copy's ``<dataset>.<column>``."""
    out = [f"{subject.dataset}.{subject.column}"]
    for t in datasets:
        for c in t.columns:
            ns = f"{t.dataset}.{c}"
            if ns.lower() not in {x.lower() for x in out}:
                out.append(ns)
    return out


def platform_copies(platform: Platform, subject: Subject,
                    datasets: list[ErasureTarget]) -> tuple[list[ErasureTarget], list[ErasureTarget]]:
    """(targets that go before the dead letters, targets that go after them) for the erasable
    dataset targets ``datasets``."""
    from headwater.cdc.sqlite import CHANGE_TABLE, has_change_table

    erasable = [t for t in datasets if t.addressable and t.kind is TargetKind.DATASET]
    before: list[ErasureTarget] = []
    by_store: dict[str, list[ErasureTarget]] = {}
    for t in erasable:
        if t.store is not None:
            by_store.setdefault(t.store, []).append(t)
    for store, ts in sorted(by_store.items()):
        if _kind(platform, store) != "sqlite":
            continue
        path = platform.store(store).path  # type: ignore[attr-defined]
        if has_change_table(path):
            pairs = tuple(f"{t.dataset.split('.', 1)[1]}.{c}" for t in ts for c in t.columns)
            before.append(ErasureTarget(TargetKind.CHANGE_TABLE, f"{store}.{CHANGE_TABLE}", store, pairs,
                                        "cdc change table (full row images)"))
    pairs = tuple(f"{t.dataset}.{c}" for t in erasable for c in t.columns)
    for store in sorted(platform.config.stores):
        if _kind(platform, store) == "parquet":
            before.append(ErasureTarget(TargetKind.ARCHIVE, f"{store}.archive", store, pairs,
                                        "retention archives"))
    after = [ErasureTarget(TargetKind.SUBJECT_KEY, SUBJECT_KEYS, None, tuple(namespaces(subject, erasable)),
                           "crypto-shredding keys of event topics")]
    stores = set(by_store) | {t.store for t in before if t.kind is TargetKind.CHANGE_TABLE and t.store}
    for store in sorted(stores):
        tables = tuple(sorted({t.dataset.split(".", 1)[1] for t in by_store.get(store, [])}
                              | ({CHANGE_TABLE} if any(b.store == store and b.kind is TargetKind.CHANGE_TABLE
                                                       for b in before) else set())))
        if _kind(platform, store) == "snowflake":
            after.append(ErasureTarget(
                TargetKind.STORAGE, storage_name(store), store, tables, "storage of erased rows", addressable=False,
                reason="Snowflake keeps changed micro-partitions in Time Travel and Fail-safe for their "
                       "retention period; Headwater cannot purge them"))
            continue
        after.append(ErasureTarget(TargetKind.STORAGE, storage_name(store), store, tables, "storage of erased rows"))
    after.append(ErasureTarget(TargetKind.STORAGE, storage_name(None), None, ("hw_dead_letters", "hw_subject_keys"),
                               "storage of erased dead letters and keys"))
    return before, after


def _pairs(columns: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(c.rpartition(".")[0], c.rpartition(".")[2]) for c in columns]


def count_copy(platform: Platform, kind: TargetKind, store: str | None, columns: tuple[str, ...],
               value: str, datasets: list[Any]) -> int:
    """How much of the subject a change-table, archive, subject-key or storage target still
    holds (rows, live keys, orphan files)."""
    if kind is TargetKind.CHANGE_TABLE:
        from headwater.cdc.sqlite import subject_changes

        return subject_changes(platform.store(str(store)).path, _pairs(columns), value)  # type: ignore[attr-defined]
    if kind is TargetKind.ARCHIVE:
        return _archives(platform, str(store), columns, value, remove=False)
    if kind is TargetKind.SUBJECT_KEY:
        keys = platform.subject_keys
        return sum(bool(keys.exists(ns, value)) for ns in columns)
    if kind is TargetKind.STORAGE:
        from headwater.erasure._scrub import leftover

        return leftover(platform, store, datasets, value)
    raise ValueError(f"not a platform copy: {kind}")


def erase_copy(platform: Platform, kind: TargetKind, store: str | None, columns: tuple[str, ...],
               value: str, datasets: list[Any]) -> tuple[int | None, str | None]:
    """Erase the subject from one such target: (rows removed or None, a note for the report)."""
    if kind is TargetKind.CHANGE_TABLE:
        from headwater.cdc.sqlite import subject_changes

        path = platform.store(str(store)).path  # type: ignore[attr-defined]
        return subject_changes(path, _pairs(columns), value, delete=True), None
    if kind is TargetKind.ARCHIVE:
        return _archives(platform, str(store), columns, value, remove=True), None
    if kind is TargetKind.SUBJECT_KEY:
        keys = platform.subject_keys
        shredded = sum(bool(keys.shred(ns, value)) for ns in columns)
        return None, f"{shredded} key(s) shredded; sealed fields of the subject's events no longer open"
    if kind is TargetKind.STORAGE:
        from headwater.erasure._scrub import scrub

        return None, scrub(platform, store, columns, datasets, value)
    raise ValueError(f"not a platform copy: {kind}")


def _archives(platform: Platform, store: str, columns: tuple[str, ...], value: str, *, remove: bool) -> int:
    from headwater.retention._archive import subject_rows_in_archives

    by_dataset: dict[str, list[str]] = {}
    for ds, col in _pairs(columns):
        by_dataset.setdefault(ds, []).append(col)
    return subject_rows_in_archives(platform, by_dataset, value, archive=store, remove=remove)
