"""Copy rows to the lake as Parquet before retention deletes them, and prove the copy is there."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from headwater.errors import InvalidInput, StoreError, StoreUnavailable
from headwater.stores.parquet import ARCHIVE_DIR

if TYPE_CHECKING:
    from headwater.platform import Platform
    from headwater.stores.base import Store

__all__ = ["ArchiveError", "archive_store", "write_archive"]


class ArchiveError(StoreError):
    """The archive copy could not be written or did not read back as written; nothing was deleted."""


def archive_store(platform: Platform, name: str) -> Any:
    """The Parquet store called ``name`` (``InvalidInput`` when it is not a Parquet store)."""
    store = platform.store(name)
    if getattr(store, "kind", None) != "parquet":
        raise InvalidInput(f"archive store {name!r} is a {store.kind} store; archives go to a Parquet "
                           "store (the lake)", store=name)
    return store


def archive_path(lake: Any, dataset: str, now: dt.datetime, run_id: str) -> str:
    """``<lake root>/archive/<dataset>/<date>/<run id>.parquet``."""
    return f"{lake.root}/{ARCHIVE_DIR}/{dataset}/{now:%Y-%m-%d}/{run_id}.parquet"


def write_archive(lake: Any, path: str, store: Store, sql: str, params: list[Any]) -> int:
    """Stream the rows of ``sql`` on ``store`` into one Parquet file at ``path`` on the lake's
    filesystem, then read it back and check rows and schema. Returns the row count (0: no file)."""
    fs: pafs.FileSystem = lake.fs
    reader = store.execute(sql, params)
    schema = reader.schema
    rows = 0
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as sink:
            writer = pq.ParquetWriter(sink, schema)
            try:
                for batch in reader:
                    if batch.num_rows:
                        writer.write_batch(batch)
                        rows += batch.num_rows
            finally:
                writer.close()
    except (OSError, pa.ArrowException) as err:
        _remove(fs, path)
        raise ArchiveError(f"cannot write archive {path}: {_first_line(err)}", path=path) from None
    if rows == 0:
        _remove(fs, path)
        return 0
    verify_archive(lake, path, rows, schema)
    return rows


def verify_archive(lake: Any, path: str, rows: int, schema: pa.Schema) -> None:
    """Read the archive file back in full: same schema, same number of rows, or ``ArchiveError``."""
    try:
        with lake.fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            got_schema = pf.schema_arrow
            counted = sum(b.num_rows for b in pf.iter_batches(batch_size=65_536))
            declared = pf.metadata.num_rows
    except FileNotFoundError:
        raise ArchiveError(f"archive {path} is missing after writing it", path=path) from None
    except (OSError, pa.ArrowException) as err:
        raise StoreUnavailable(f"cannot read back archive {path}: {_first_line(err)}", path=path) from None
    if counted != rows or declared != rows:
        raise ArchiveError(f"archive {path} holds {counted} rows, {rows} were written", path=path)
    if got_schema.names != schema.names:
        raise ArchiveError(f"archive {path} has columns {got_schema.names}, expected {schema.names}", path=path)


def _remove(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_file(path)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
