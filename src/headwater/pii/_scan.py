"""Scan a catalogued dataset through a session and apply accepted proposals to the catalog."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from headwater.errors import HeadwaterError, InvalidInput
from headwater.pii._classify import ColumnReport, Proposal, inspect_column
from headwater.pii._detectors import DEFAULT_REGIONS

if TYPE_CHECKING:
    from headwater.access.session import Session
    from headwater.catalog import Catalog, Dataset

__all__ = ["ScanReport", "apply_proposals", "classify_table", "scan_dataset"]

log = logging.getLogger("headwater.pii")


@dataclass(slots=True)
class ScanReport:
    """Per-column proposals for one dataset; counts only, never values."""

    dataset: str
    rows_sampled: int
    columns: list[ColumnReport] = field(default_factory=list)
    elapsed_s: float = 0.0
    error: str | None = None
    """Why the bounded sample could not be read as a whole (columns were then read one by one)."""

    @property
    def proposals(self) -> list[tuple[str, Proposal]]:
        """``(column, proposal)`` pairs, most confident first."""
        pairs = [(c.name, p) for c in self.columns for p in c.proposals]
        return sorted(pairs, key=lambda cp: -cp[1].confidence)

    @property
    def unreadable(self) -> list[str]:
        """Columns that could not be examined (an error, or every value unreadable)."""
        return [c.name for c in self.columns if c.is_unreadable]

    @property
    def bytes_scanned(self) -> int:
        """UTF-8 bytes of the values examined."""
        return sum(c.bytes for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI prints it)."""
        return {
            "dataset": self.dataset,
            "rows_sampled": self.rows_sampled,
            "elapsed_s": round(self.elapsed_s, 4),
            "bytes_scanned": self.bytes_scanned,
            "error": self.error,
            "unreadable": self.unreadable,
            "columns": [
                {
                    "name": c.name, "type": c.type, "sampled": c.sampled, "nulls": c.nulls,
                    "readable": c.readable, "unreadable": c.unreadable,
                    "unreadable_reasons": c.unreadable_reasons, "error": c.error,
                    "proposals": [
                        {"tag": p.tag, "confidence": p.confidence, "matches": p.matches,
                         "sampled": p.sampled, "evidence": p.evidence, "estimated": p.estimated}
                        for p in c.proposals
                    ],
                }
                for c in self.columns
            ],
        }


def _select(ds: Dataset, columns: list[str] | None, limit: int) -> str:
    table = exp.Table(this=exp.to_identifier(ds.table, quoted=True), db=exp.to_identifier(ds.store, quoted=True))
    cols = [exp.column(c, quoted=True) for c in columns] if columns else [exp.Star()]
    return exp.select(*cols).from_(table).limit(limit).sql(dialect="duckdb")


def classify_table(
    dataset: str, table: pa.Table, *, regions: tuple[str, ...] = DEFAULT_REGIONS, validate: int = 128,
) -> ScanReport:
    """Classify every column of an Arrow table already read (the whole table is the sample)."""
    report = ScanReport(dataset=dataset, rows_sampled=table.num_rows)
    for name in table.column_names:
        report.columns.append(inspect_column(name, table.column(name), sample=0, regions=regions,
                                             validate=validate))
    return report


def scan_dataset(
    session: Session,
    dataset: str | Dataset,
    *,
    sample: int = 10_000,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    validate: int = 128,
) -> ScanReport:
    """Read at most ``sample`` rows of ``dataset`` through ``session`` and classify every column.

    The rows are the first ``sample`` the store returns (``SELECT * ... LIMIT``), read with the
    session's principal, so masks apply: scan as a principal that may see raw values. When the
    whole sample cannot be read, each column is read alone and the ones that fail are reported
    with their error rather than skipped.
    """
    if sample <= 0:
        raise InvalidInput(f"sample must be a positive number of rows, not {sample!r}")
    ds = session.platform.catalog.get(dataset) if isinstance(dataset, str) else dataset
    started = time.perf_counter()
    report = ScanReport(dataset=ds.name, rows_sampled=0)
    table: pa.Table | None = None
    try:
        table = session.sql(_select(ds, None, sample)).to_arrow()
    except HeadwaterError as err:
        report.error = str(err)
        log.warning("pii scan of %s: reading all columns failed (%s); reading them one by one",
                    ds.name, type(err).__name__)
    if table is not None:
        report = classify_table(ds.name, table, regions=regions, validate=validate)
    else:
        for col in ds.columns:
            try:
                one = session.sql(_select(ds, [col.name], sample)).to_arrow()
            except HeadwaterError as err:
                failed = inspect_column(col.name, [], sample=0, regions=regions, validate=validate)
                failed.type = col.type
                failed.error = f"{type(err).__name__}: {err}"[:300]
                report.columns.append(failed)
                continue
            report.rows_sampled = max(report.rows_sampled, one.num_rows)
            report.columns.append(inspect_column(col.name, one.column(0), sample=0, regions=regions,
                                                 validate=validate))
    report.elapsed_s = time.perf_counter() - started
    return report


def apply_proposals(
    catalog: Catalog,
    report: ScanReport,
    *,
    min_confidence: float = 0.8,
    columns: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Tag each column with its proposals at or above ``min_confidence``; returns what was added.

    Existing tags are kept (tags are added, never replaced). ``columns`` limits which columns
    are touched.
    """
    wanted = None if columns is None else {c.lower() for c in columns}
    applied: dict[str, list[str]] = {}
    for col in report.columns:
        if wanted is not None and col.name.lower() not in wanted:
            continue
        tags = [p.tag for p in col.proposals if p.confidence >= min_confidence]
        if tags:
            catalog.set_tags(report.dataset, col.name, tags)
            applied[col.name] = tags
    return applied
