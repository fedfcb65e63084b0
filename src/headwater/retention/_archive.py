"""Copy rows to the lake as Parquet before retention deletes them, and prove the copy is there;
find and remove a data subject's archived rows (erasure reaches archives too).

A rewrite replaces the file in one step (a rename locally: the old file's bytes are no longer in
any file; one PUT on S3: with bucket versioning on, older versions stay until the bucket's
lifecycle removes them), and a file left without rows is deleted."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
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

__all__ = [
    "ArchiveError",
    "archive_files",
    "archive_store",
    "erase_from_archives",
    "subject_rows_in_archives",
    "subject_rows_in_file",
    "write_archive",
]


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
    _verify_file(lake.fs, path, rows, schema)


def _verify_file(fs: pafs.FileSystem, path: str, rows: int, schema: pa.Schema) -> None:
    try:
        with fs.open_input_file(path) as f:
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


def erase_from_archives(platform: Platform, dataset: str, column: str | Sequence[str], value: Any, *,
                        archive: str = "lake") -> int:
    """Remove the rows of ``dataset``'s archives whose ``column`` (or any of several columns)
    equals ``value`` (erasure must reach archived copies too). Each touched file is replaced in
    one step (a rename locally, one PUT on S3) or deleted when no row is left; returns the number
    of rows removed."""
    columns = [column] if isinstance(column, str) else list(column)
    return subject_rows_in_archives(platform, {dataset: columns}, value, archive=archive, remove=True)


def subject_rows_in_archives(platform: Platform, columns: Mapping[str, Sequence[str]], value: Any, *,
                             archive: str = "lake", remove: bool = False) -> int:
    """Archived rows of each dataset in ``columns`` (dataset -> key columns) holding ``value``
    in one of its key columns, on the Parquet store ``archive``: counted, or removed when
    ``remove`` (the file is rewritten without them; a file left empty is deleted)."""
    lake = archive_store(platform, archive)
    found = 0
    for dataset, cols in columns.items():
        for path in archive_files(lake, dataset):
            found += subject_rows_in_file(lake.fs, path, cols, value, remove=remove)
    return found


def subject_rows_in_file(fs: pafs.FileSystem, path: str, columns: Sequence[str], value: Any, *,
                         remove: bool = False, delete_file: bool = False) -> int:
    """Rows of one Parquet file whose ``columns`` hold ``value`` (compared as each column's
    type: ``"15"`` matches an integer 15). With ``remove`` the file is rewritten without them
    (deleted when none is left, or always with ``delete_file``); returns how many there were."""
    try:
        with fs.open_input_file(path) as f:
            table = pq.read_table(f)
    except FileNotFoundError:
        return 0
    except (OSError, pa.ArrowException) as err:
        raise StoreUnavailable(f"cannot read {path}: {_first_line(err)}", path=path) from None
    hit = _subject_mask(table, columns, value)
    n = 0 if hit is None else (pc.sum(hit).as_py() or 0)
    if not n or not remove:
        return n
    kept = table.filter(pc.invert(hit))
    if delete_file or kept.num_rows == 0:
        try:
            fs.delete_file(path)
        except OSError as err:
            raise ArchiveError(f"cannot delete {path}: {_first_line(err)}", path=path) from None
    else:
        _replace_file(fs, path, kept)
    return n


def _subject_mask(table: pa.Table, columns: Sequence[str], value: Any) -> pa.Array | None:
    names = {n.lower(): n for n in table.column_names}
    mask = None
    for column in columns:
        name = names.get(column.lower())
        if name is None:
            continue
        col = table.column(name)
        try:
            target = pa.scalar(value).cast(col.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue  # no row can hold a value of another type
        hit = pc.fill_null(pc.equal(col, target), False)
        mask = hit if mask is None else pc.or_(mask, hit)
    return mask


def _replace_file(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
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
        raise ArchiveError(f"cannot rewrite {path}: {_first_line(err)}", path=path) from None
    _verify_file(fs, path, table.num_rows, table.schema)


def _remove(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_file(path)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
