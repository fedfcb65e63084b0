"""Copy rows to the lake as Parquet before retention deletes them, and prove the copy is there."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from headwater.errors import InvalidInput, StoreError, StoreUnavailable
from headwater.stores.parquet import ARCHIVE_DIR

if TYPE_CHECKING:
    from headwater.platform import Platform
    from headwater.stores.base import Store

__all__ = ["ArchiveError", "archive_files", "archive_store", "erase_from_archives", "write_archive"]


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


def archive_files(lake: Any, dataset: str | None = None) -> list[str]:
    """Paths of the archive files (of one dataset, or all), oldest date first."""
    base = f"{lake.root}/{ARCHIVE_DIR}" + (f"/{dataset}" if dataset else "")
    try:
        infos = lake.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as err:
        raise StoreUnavailable(f"cannot list archives under {base}: {_first_line(err)}") from None
    return sorted(i.path for i in infos if i.is_file and i.path.endswith(".parquet"))


def erase_from_archives(platform: Platform, dataset: str, column: str, value: Any, *,
                        archive: str = "lake") -> int:
    """Remove the rows of ``dataset``'s archives whose ``column`` equals ``value`` (erasure must
    reach archived copies too). Each touched file is replaced in one step (a rename locally, one
    PUT on S3); returns the number of rows removed."""
    lake = archive_store(platform, archive)
    removed = 0
    for path in archive_files(lake, dataset):
        try:
            with lake.fs.open_input_file(path) as f:
                table = pq.read_table(f)
        except (OSError, pa.ArrowException) as err:
            raise StoreUnavailable(f"cannot read archive {path}: {_first_line(err)}", path=path) from None
        names = {n.lower(): n for n in table.column_names}
        if column.lower() not in names:
            continue
        col = table.column(names[column.lower()])
        try:
            target = pa.scalar(value).cast(col.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue  # no row can hold a value of another type
        hit = pc.fill_null(pc.equal(col, target), False)
        n = pc.sum(hit).as_py() or 0
        if not n:
            continue
        kept = table.filter(pc.invert(hit))
        _replace_file(lake, path, kept)
        removed += n
    return removed


def _replace_file(lake: Any, path: str, table: pa.Table) -> None:
    fs: pafs.FileSystem = lake.fs
    local = isinstance(fs, pafs.LocalFileSystem)
    target = f"{path}.tmp" if local else path
    try:
        with fs.open_output_stream(target) as sink:
            pq.write_table(table, sink)
        if local:
            fs.move(target, path)  # atomic rename
    except (OSError, pa.ArrowException) as err:
        if local:
            _remove(fs, target)
        raise ArchiveError(f"cannot rewrite archive {path}: {_first_line(err)}", path=path) from None
    verify_archive(lake, path, table.num_rows, table.schema)


def _remove(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_file(path)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
