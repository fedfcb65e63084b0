"""Audit export writers: JSON Lines and Parquet, streamed in batches."""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from headwater.audit._model import AuditRecord

_BATCH = 10_000


def write_jsonl(path: Path, records: Iterable[AuditRecord]) -> int:
    """One JSON object per line (``AuditRecord.to_dict``); returns the count."""
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False, sort_keys=True))
            fh.write("\n")
            n += 1
    return n


def _schema():  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.schema([
        ("seq", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("actor", pa.string()),
        ("action", pa.string()),
        ("datasets", pa.list_(pa.string())),
        ("columns", pa.list_(pa.string())),
        ("masks", pa.map_(pa.string(), pa.string())),
        ("row_filters", pa.list_(pa.string())),
        ("decision", pa.string()),
        ("reason", pa.string()),
        ("statement", pa.string()),
        ("rows", pa.int64()),
        ("duration_ms", pa.float64()),
        ("trace_id", pa.string()),
        ("extra", pa.string()),  # JSON text: any shape
        ("prev_hash", pa.string()),
        ("hash", pa.string()),
    ])


def write_parquet(path: Path, records: Iterable[AuditRecord]) -> int:
    """A Parquet file with one row per record (``extra`` as JSON text); returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    it = iter(records)
    with pq.ParquetWriter(str(path), schema) as writer:
        while True:
            batch = list(islice(it, _BATCH))
            if not batch and n:
                break
            cols = {
                "seq": [r.seq for r in batch],
                "ts": [r.ts for r in batch],
                "actor": [r.actor for r in batch],
                "action": [r.action for r in batch],
                "datasets": [list(r.datasets) for r in batch],
                "columns": [list(r.columns) for r in batch],
                "masks": [list(r.masks.items()) for r in batch],
                "row_filters": [list(r.row_filters) for r in batch],
                "decision": [r.decision for r in batch],
                "reason": [r.reason for r in batch],
                "statement": [r.statement for r in batch],
                "rows": [r.rows for r in batch],
                "duration_ms": [r.duration_ms for r in batch],
                "trace_id": [r.trace_id for r in batch],
                "extra": [json.dumps(r.extra, sort_keys=True) for r in batch],
                "prev_hash": [r.prev_hash for r in batch],
                "hash": [r.hash for r in batch],
            }
            writer.write_table(pa.Table.from_pydict(cols, schema=schema))
            n += len(batch)
            if len(batch) < _BATCH:
                break
    return n
