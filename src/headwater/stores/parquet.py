"""Parquet datasets on the local filesystem or S3 (the ``lake``).

Each dataset is a folder of Parquet files (hive-partitioned when ``partition_by`` is given) plus
``_manifest.json``, which lists the files that make up the current version. Writers add new,
uniquely named files and then replace the manifest in one put (a rename locally, a single PUT on
S3), so every write is atomic: readers see the old version or the new one, never a mix, and a
failed write leaves only unreferenced files that are removed on the spot. A folder of Parquet
files without a manifest (written by another tool) is read as-is.

Queries run in an in-process DuckDB over Arrow datasets, so DuckDB pushes projections and
filters into the Parquet scan (row groups are skipped by their statistics). That DuckDB is locked
(external access off, configuration locked: it reads the lake through Arrow, never through its
own file system), and a principal read (``execute(..., scope=...)``) registers only the planned
datasets: any other name, the retention ``archive`` folder included, is refused.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import sqlglot
from sqlglot import exp

from headwater.errors import (
    DatasetNotFound,
    HeadwaterError,
    QueryError,
    QueryParseError,
    QueryRejected,
    StoreUnavailable,
    WriteError,
)
from headwater.stores._sql import (
    _match_names,
    ascii_fold,
    bind_columns,
    bound_assignments,
    cast_to_schema,
    dedupe_last,
    param_template,
    reject_case_duplicates,
    split_params,
)
from headwater.stores.base import (
    BACKSTOP_RULE,
    Capabilities,
    ColumnInfo,
    ReadScope,
    RowChange,
    TableInfo,
    WriteMode,
    WriteResult,
)
from headwater.stores.duckdb import DuckDBStore, check_read_statement, new_connection

__all__ = ["ParquetStore"]

MANIFEST = "_manifest.json"
ARCHIVE_DIR = "archive"
"""Folder of retention archives (``archive/<dataset>/<date>/<run>.parquet``); not a dataset."""


def _schema_to_b64(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def _schema_from_b64(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


class ParquetStore:
    """A folder (local path or ``s3://bucket/prefix``) of Parquet datasets."""

    kind: ClassVar[str] = "parquet"

    def __init__(
        self,
        name: str,
        root: str,
        *,
        filesystem: pafs.FileSystem | None = None,
        partition_by: dict[str, list[str]] | None = None,
    ) -> None:
        self.name = name
        self.capabilities = Capabilities(sql=True, dialect="duckdb", transactions=True, timeout=True)
        self.partition_by = partition_by or {}
        if filesystem is None:
            filesystem, root = pafs.FileSystem.from_uri(root) if "://" in root else (pafs.LocalFileSystem(), root)
        self.fs = filesystem
        self.root = root.rstrip("/")
        self.uri = root
        self._lock = threading.Lock()
        try:
            if isinstance(self.fs, pafs.LocalFileSystem):
                self.fs.create_dir(self.root, recursive=True)
            else:
                self.fs.get_file_info(self.root)
        except OSError as err:
            raise StoreUnavailable(f"lake store {name!r} unreachable: {_clean(err)}", store=name) from None

    def __repr__(self) -> str:
        return f"ParquetStore(name={self.name!r}, root={self.root!r})"

    def name_key(self, name: str) -> str:
        """Column names compare as DuckDB (which queries the lake) compares them: ASCII case
        folded."""
        return ascii_fold(name)

    # -- manifests ---------------------------------------------------------------------
    def _dir(self, table: str) -> str:
        if "/" in table or table.startswith(".") or not table:
            raise DatasetNotFound(f"invalid dataset name {table!r} in store {self.name!r}",
                                  dataset=f"{self.name}.{table}")
        return f"{self.root}/{table}"

    def _read_manifest(self, table: str) -> dict[str, Any] | None:
        path = f"{self._dir(table)}/{MANIFEST}"
        try:
            with self.fs.open_input_stream(path) as f:
                return json.loads(f.read().decode())
        except FileNotFoundError:
            return None
        except OSError as err:
            if "NoSuchKey" in str(err) or "not found" in str(err).lower():
                return None
            raise StoreUnavailable(f"lake store {self.name!r}: {_clean(err)}", store=self.name) from None

    def _write_manifest(self, table: str, manifest: dict[str, Any]) -> None:
        path = f"{self._dir(table)}/{MANIFEST}"
        body = json.dumps(manifest).encode()
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(self._dir(table), recursive=True)  # a zero-row dataset has no files yet
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with self.fs.open_output_stream(tmp) as f:
                f.write(body)
            self.fs.move(tmp, path)  # atomic rename
        else:
            with self.fs.open_output_stream(path) as f:  # one PUT: atomic on S3
                f.write(body)

    def _files(self, table: str) -> tuple[list[str], pa.Schema | None, list[str], list[str]]:
        """Current files (full paths), schema, partition columns and key of a dataset."""
        manifest = self._read_manifest(table)
        base = self._dir(table)
        if manifest is not None:
            files = [f"{base}/{rel}" for rel in manifest["files"]]
            return files, _schema_from_b64(manifest["schema"]), manifest.get("partition_by", []), manifest.get("key", [])
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        except FileNotFoundError:
            raise DatasetNotFound(
                f"dataset {table!r} does not exist in store {self.name!r}", dataset=f"{self.name}.{table}"
            ) from None
        except OSError as err:
            raise StoreUnavailable(f"lake store {self.name!r}: {_clean(err)}", store=self.name) from None
        files = sorted(i.path for i in infos if i.is_file and i.path.endswith(".parquet"))
        if not files:
            raise DatasetNotFound(
                f"dataset {table!r} does not exist in store {self.name!r}", dataset=f"{self.name}.{table}"
            )
        return files, None, [], []

    def dataset(self, table: str) -> ds.Dataset:
        """The current version of a dataset as a pyarrow dataset (lazy; nothing is read)."""
        files, schema, parts, _ = self._files(table)
        partitioning = ds.partitioning(
            pa.schema([schema.field(p) for p in parts]), flavor="hive"
        ) if schema is not None and parts else "hive"
        try:
            return ds.dataset(
                files,
                schema=schema,
                format="parquet",
                filesystem=self.fs,
                partitioning=partitioning,
                partition_base_dir=self._dir(table),
            )
        except (OSError, pa.ArrowInvalid) as err:
            raise QueryError(f"cannot read {self.name}.{table}: {_clean(err)}", store=self.name) from None

    # -- Store protocol ----------------------------------------------------------------
    def render_template(self, tree: exp.Expression) -> tuple[str, tuple[int, ...]]:
        """DuckDB SQL with ``?`` placeholders and the parameter index of each."""
        return param_template(tree.sql(dialect="duckdb"), lambda n: "?")

    def render(self, tree: exp.Expression, params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        """Render in DuckDB's dialect (queries on the lake run in DuckDB)."""
        return split_params(tree.sql(dialect="duckdb"), params, lambda n: "?")

    def table_expr(self, table: str) -> exp.Table:
        """A dataset as a table node; ``execute`` registers it under this name."""
        return exp.Table(this=exp.to_identifier(table))

    def execute(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        batch_size: int = 65_536,
        timeout_s: float | None = None,
        scope: ReadScope | None = None,
    ) -> pa.RecordBatchReader:
        """Run DuckDB SQL whose table names are this store's datasets.

        With ``scope`` (a principal's read) only the scope's datasets are registered, and the
        statement must be one SELECT by DuckDB's parser (module docstring).
        """
        con = self._engine(sql, scope)
        return DuckDBStore.over(self.name, con).execute(sql, params, batch_size=batch_size, timeout_s=timeout_s,
                                                        scope=scope)

    def _engine(self, sql: str, scope: ReadScope | None = None) -> Any:
        """A locked in-memory DuckDB connection with the datasets ``sql`` names registered
        (with ``scope``: only planned ones; another name is refused unless it names a CTE)."""
        try:
            tree = sqlglot.parse_one(sql, dialect="duckdb")
        except sqlglot.errors.ParseError as err:
            raise QueryParseError(f"cannot parse query for {self.name!r}: {err}") from None
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        names: dict[str, str] = {}
        for t in tree.find_all(exp.Table):
            if not t.name:
                continue
            low = t.name.lower()
            if scope is not None and not scope.allows_table(low):
                if low in ctes:
                    continue  # left to DuckDB: a CTE, or an unregistered name that fails to bind
                raise QueryRejected(
                    f"{self.name!r} (parquet) refused a read of {t.name[:60]!r}: principal reads may "
                    "only read the planned datasets", rule=BACKSTOP_RULE, store=self.name)
            if scope is None and low in ctes:
                continue
            names.setdefault(low, t.name)
        datasets = {name: self.dataset(name) for name in names.values()}
        con = new_connection(locked=True)
        for name, data in datasets.items():
            con.register(name, data)
        return con

    def tables(self) -> list[TableInfo]:
        """Every dataset folder under the root (not the retention ``archive`` folder)."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        except OSError as err:
            raise StoreUnavailable(f"lake store {self.name!r}: {_clean(err)}", store=self.name) from None
        out = []
        for info in sorted(infos, key=lambda i: i.path):
            if info.type == pafs.FileType.Directory and not info.base_name.startswith(("_", ".")):
                if info.base_name == ARCHIVE_DIR and self._read_manifest(ARCHIVE_DIR) is None:
                    continue  # retention's archive copies, not a dataset
                with contextlib.suppress(DatasetNotFound):
                    out.append(self.table(info.base_name))
        return out

    def table(self, name: str) -> TableInfo:
        """Introspect one dataset: schema from the manifest or the files."""
        files, schema, parts, key = self._files(name)
        if schema is None:
            schema = self.dataset(name).schema
        cols = tuple(ColumnInfo(f.name, f.type, f.nullable, f.name in key) for f in schema)
        loc = self.uri if "://" in self.uri else f"file://{self.root}"
        return TableInfo(name=name, columns=cols, primary_key=tuple(key), location=f"{loc}/{name}")

    def explain(self, sql: str, params: Sequence[Any] = ()) -> str:
        """DuckDB's plan over the Parquet scan."""
        # Datasets are found in ``sql`` itself: sqlglot does not look inside ``EXPLAIN ...``.
        con = self._engine(sql)
        try:
            check_read_statement(con, sql, self.name)
        except BaseException:
            con.close()
            raise
        reader = DuckDBStore.over(self.name, con).execute(f"EXPLAIN {sql}", params)
        t = reader.read_all()
        return "\n".join(str(v) for v in t.column(t.num_columns - 1).to_pylist())

    def close(self) -> None:
        """Nothing to release."""

    def write(
        self,
        table: str,
        data: pa.Table,
        *,
        mode: WriteMode = WriteMode.APPEND,
        key: Sequence[str] = (),
        partition_by: Sequence[str] | None = None,
        _recreate: bool = False,
    ) -> WriteResult:
        """Write new files, then swap the manifest; see the module docstring."""
        mode = WriteMode(mode)
        dataset = f"{self.name}.{table}"
        reject_case_duplicates(data.column_names, dataset)
        with self._lock:
            manifest = self._read_manifest(table)
            replaced: list[str] = []
            if _recreate and manifest is not None:
                replaced = list(manifest["files"])
                manifest = {"version": manifest.get("version", 0)}
                created = True
            else:
                created = manifest is None
            if created:
                legacy: list[str] = []
                if not replaced:
                    try:
                        legacy, _, _, _ = self._files(table)
                    except DatasetNotFound:
                        legacy = []
                if legacy:
                    raise WriteError(
                        f"{dataset} holds Parquet files written outside Headwater; "
                        "register it with a manifest before writing", dataset=dataset)
                parts = list(partition_by or self.partition_by.get(table, []))
                schema = _lake_schema(data.schema)
                data = data.cast(schema) if not data.schema.equals(schema) else data
                key = list(key)
                old_files: list[str] = []
            else:
                schema = _schema_from_b64(manifest["schema"])
                parts = manifest.get("partition_by", [])
                key = list(key) or manifest.get("key", [])
                old_files = list(manifest["files"])
                # An upsert writes only the columns it was given (omitted ones keep their values).
                data = cast_to_schema(data, schema, dataset, fold=self.name_key,
                                      partial=mode is WriteMode.UPSERT)
            missing = [p for p in parts if p not in data.column_names]
            if missing:
                raise WriteError(f"{dataset} is partitioned by {missing} but the data lacks them",
                                 dataset=dataset)
            if mode is WriteMode.UPSERT:
                if not key:
                    raise WriteError(f"upsert into {dataset} needs key=[...]", dataset=dataset)
                key = _match_names(key, data.column_names, dataset, self.name_key)
                if any(data.column(k).null_count for k in key):
                    raise WriteError(f"upsert into {dataset}: key columns must not be null",
                                     dataset=dataset)
                data = dedupe_last(data, key)
            rows_written = data.num_rows
            base = self._dir(table)
            written: list[str] = []
            try:
                keep_files = old_files
                if mode is WriteMode.OVERWRITE:
                    keep_files = []
                elif mode is WriteMode.UPSERT and old_files:
                    keep_files, rewritten, matched = self._remove_keys(table, old_files, schema, parts, key, data)
                    data = _complete(data, matched, key, schema)
                    data = pa.concat_tables([rewritten, data]) if rewritten.num_rows else data
                elif mode is WriteMode.UPSERT:
                    data = _complete(data, schema.empty_table(), key, schema)
                written = self._write_files(base, data, schema, parts)
                new_manifest = {
                    "format": "headwater-lake/1",
                    "version": (manifest or {}).get("version", 0) + 1,
                    "schema": _schema_to_b64(schema),
                    "partition_by": parts,
                    "key": key,
                    "files": keep_files + written,
                }
                self._write_manifest(table, new_manifest)
            except HeadwaterError:
                self._delete(base, written)
                raise
            except (OSError, pa.ArrowException) as err:
                self._delete(base, written)
                raise StoreUnavailable(f"write to {dataset} failed and was rolled back: {_clean(err)}",
                                       store=self.name) from None
            self._delete(base, [f for f in old_files + replaced if f not in keep_files])
        # ``data`` now also holds the surviving rows of rewritten files: report the caller's rows.
        return WriteResult(dataset=dataset, mode=mode, rows_written=rows_written, created=created)

    def _remove_keys(
        self, table: str, files: list[str], schema: pa.Schema, parts: list[str], key: list[str],
        data: pa.Table,
    ) -> tuple[list[str], pa.Table, pa.Table]:
        """Split existing files into untouched ones, the surviving rows of touched ones, and the
        rows the upsert replaces (their stored values fill the columns the data left out)."""
        base = self._dir(table)
        new_keys = data.select(key)
        keep: list[str] = []
        survivors: list[pa.Table] = []
        matched: list[pa.Table] = []
        partitioning = ds.partitioning(pa.schema([schema.field(p) for p in parts]), flavor="hive") if parts else None
        for rel in files:
            one = ds.dataset(f"{base}/{rel}", schema=schema, format="parquet", filesystem=self.fs,
                             partitioning=partitioning, partition_base_dir=base)
            existing = one.to_table()
            hit = existing.select(key).join(new_keys, keys=key, join_type="left semi")
            if hit.num_rows == 0:
                keep.append(rel)
                continue
            survivors.append(existing.join(new_keys, keys=key, join_type="left anti").select(schema.names))
            matched.append(existing.join(new_keys, keys=key, join_type="left semi").select(schema.names))
        if not survivors:
            return keep, data.schema.empty_table(), schema.empty_table()
        return keep, pa.concat_tables(survivors).cast(schema), pa.concat_tables(matched).cast(schema)

    def _write_files(self, base: str, data: pa.Table, schema: pa.Schema, parts: list[str]) -> list[str]:
        if data.num_rows == 0:
            return []
        paths: list[str] = []
        token = uuid.uuid4().hex[:12]
        ds.write_dataset(
            data.select(schema.names),
            base_dir=base,
            format="parquet",
            filesystem=self.fs,
            partitioning=ds.partitioning(pa.schema([schema.field(p) for p in parts]), flavor="hive") if parts else None,
            basename_template=f"part-{token}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            max_rows_per_file=1_000_000,
            max_rows_per_group=128 * 1024,
            file_visitor=lambda f: paths.append(f.path),
        )
        return [p[len(base) + 1 :] for p in paths]

    def _delete(self, base: str, rels: list[str]) -> None:
        for rel in rels:
            with contextlib.suppress(OSError):
                self.fs.delete_file(f"{base}/{rel}")

    # -- row-level changes ---------------------------------------------------------------
    def delete_rows(
        self, table: str, where: exp.Expression, params: Sequence[Any] = ()
    ) -> WriteResult:
        """Delete matching rows: rewrite only the files that hold some, then swap the manifest."""
        info = self.table(table)
        dataset = f"{self.name}.{table}"
        pred = bind_columns(where, info, dataset)

        def change(part: pa.Table, mask: pa.Array, values: list[pa.Array]) -> pa.Table:
            return part.filter(pc.invert(mask))

        return self._rewrite(table, RowChange.DELETE, pred, [], params, change)

    def update_rows(
        self,
        table: str,
        assignments: Mapping[str, exp.Expression],
        where: exp.Expression,
        params: Sequence[Any] = (),
    ) -> WriteResult:
        """Update matching rows: rewrite only the files that hold some, then swap the manifest."""
        info = self.table(table)
        dataset = f"{self.name}.{table}"
        sets = bound_assignments(assignments, info, dataset)
        pred = bind_columns(where, info, dataset)

        def change(part: pa.Table, mask: pa.Array, values: list[pa.Array]) -> pa.Table:
            for (col, _), value in zip(sets, values, strict=True):
                i = part.schema.get_field_index(col)
                field = part.schema.field(i)
                try:
                    value = value.cast(field.type, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    raise WriteError(f"{dataset}.{col} expects {field.type}; the new value does not "
                                     "convert safely", dataset=dataset, column=col) from None
                part = part.set_column(i, field, pc.if_else(mask, value, part.column(i)))
            return part

        return self._rewrite(table, RowChange.UPDATE, pred, [v for _, v in sets], params, change)

    def _rewrite(
        self,
        table: str,
        op: RowChange,
        pred: exp.Expression,
        values: list[exp.Expression],
        params: Sequence[Any],
        change: Callable[[pa.Table, pa.Array, list[pa.Array]], pa.Table],
    ) -> WriteResult:
        """Evaluate ``pred`` (and ``values``) per file in DuckDB; files without a match are kept
        as they are, the others are rewritten through ``change`` into new files; then one
        manifest swap publishes the new version (a failure leaves the old one)."""
        dataset = f"{self.name}.{table}"
        projection = [exp.alias_(exp.func("coalesce", pred, exp.false()), "__hw_mask")]
        projection += [exp.alias_(v, f"__hw_v{i}") for i, v in enumerate(values)]
        sql, args = self.render(exp.select(*projection).from_("__hw_part"), params)
        with self._lock:
            manifest = self._read_manifest(table)
            if manifest is None:
                raise WriteError(f"{dataset} holds Parquet files written outside Headwater; "
                                 "register it with a manifest before changing rows", dataset=dataset)
            schema = _schema_from_b64(manifest["schema"])
            parts = manifest.get("partition_by", [])
            old_files = list(manifest["files"])
            base = self._dir(table)
            keep: list[str] = []
            changed: list[pa.Table] = []
            touched: list[str] = []
            count = 0
            written: list[str] = []
            try:
                for rel in old_files:
                    part = self._read_part(base, rel, schema, parts)
                    mask, computed = self._evaluate(part, sql, args, len(values), dataset)
                    hits = pc.sum(mask).as_py() or 0
                    if not hits:
                        keep.append(rel)
                        continue
                    count += hits
                    touched.append(rel)
                    changed.append(change(part, mask, computed).select(schema.names))
                if not touched:
                    return WriteResult(dataset=dataset, mode=op, rows_written=0,
                                       details={"files_rewritten": 0})
                data = pa.concat_tables(changed).cast(schema)
                written = self._write_files(base, data, schema, parts)
                new_manifest = dict(manifest)
                new_manifest["version"] = manifest.get("version", 0) + 1
                new_manifest["files"] = keep + written
                self._write_manifest(table, new_manifest)
            except HeadwaterError:
                self._delete(base, written)
                raise
            except (OSError, pa.ArrowException) as err:
                self._delete(base, written)
                raise StoreUnavailable(f"{op.value} in {dataset} failed and was rolled back: "
                                       f"{_clean(err)}", store=self.name) from None
            self._delete(base, touched)
        return WriteResult(dataset=dataset, mode=op, rows_written=count,
                           details={"files_rewritten": len(touched)})

    def _read_part(self, base: str, rel: str, schema: pa.Schema, parts: list[str]) -> pa.Table:
        partitioning = ds.partitioning(pa.schema([schema.field(p) for p in parts]), flavor="hive") if parts else None
        one = ds.dataset(f"{base}/{rel}", schema=schema, format="parquet", filesystem=self.fs,
                         partitioning=partitioning, partition_base_dir=base)
        return one.to_table().select(schema.names)

    def _evaluate(
        self, part: pa.Table, sql: str, args: list[Any], n_values: int, dataset: str
    ) -> tuple[pa.Array, list[pa.Array]]:
        """The predicate mask and the value columns for one file's rows, in row order."""
        con = new_connection(locked=True)
        try:
            con.register("__hw_part", part)
            out = con.execute(sql, args).fetch_arrow_table()
        except duckdb.Error as err:
            raise QueryError(f"{dataset}: the row predicate failed: {str(err).splitlines()[0][:300]}",
                             store=self.name, dataset=dataset) from None
        finally:
            con.close()
        if out.num_rows != part.num_rows:  # pragma: no cover - DuckDB keeps insertion order
            raise QueryError(f"{dataset}: the row predicate changed the row count", dataset=dataset)
        mask = out.column(0).combine_chunks().cast(pa.bool_())
        return mask, [out.column(i + 1).combine_chunks() for i in range(n_values)]

    def replace(self, table: str, data: pa.Table, *, key: Sequence[str] = ()) -> WriteResult:
        """Replace a dataset with ``data``'s schema and rows (one manifest swap: atomic)."""
        return self.write(table, data, mode=WriteMode.OVERWRITE, key=key, _recreate=True)

    def drop(self, table: str) -> None:
        """Delete a dataset and all its files."""
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.delete_dir(self._dir(table))


def _complete(data: pa.Table, matched: pa.Table, key: list[str], schema: pa.Schema) -> pa.Table:
    """Upserted rows with every column of ``schema``: the columns ``data`` holds, and for the
    others the stored value of the row with the same key in ``matched`` (null for a new key)."""
    omitted = [n for n in schema.names if n not in data.column_names]
    if not omitted:
        return data.select(schema.names)
    matched = dedupe_last(matched, key)
    # Join only keys and row numbers (any key type joins), then take the omitted columns by
    # row number, which works for every column type (Arrow joins refuse some payload types).
    pos = pa.array(range(data.num_rows), pa.int64())
    rows = pa.array(range(matched.num_rows), pa.int64())
    pairs = data.select(key).append_column("__hw_pos", pos).join(
        matched.select(key).append_column("__hw_row", rows), keys=key, join_type="left outer",
    ).sort_by("__hw_pos")
    take = pairs.column("__hw_row").combine_chunks()
    out = data
    for name in omitted:
        out = out.append_column(schema.field(name), matched.column(name).take(take))
    return out.select(schema.names)


def _lake_schema(schema: pa.Schema) -> pa.Schema:
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_null(t):
            t = pa.string()
        elif pa.types.is_dictionary(t):
            t = t.value_type
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_timestamp(t) and t.unit == "ns":
            t = pa.timestamp("us", t.tz)
        fields.append(pa.field(f.name, t, True))
    return pa.schema(fields)


def _clean(err: BaseException) -> str:
    """Driver message without credentials (AWS errors can quote request details)."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:300]
