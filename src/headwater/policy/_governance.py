"""Statement governance: what a query may contain regardless of grants."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlglot import exp

from headwater.errors import QueryRejected

__all__ = ["check_statement", "forbidden_function"]

DIALECT = "duckdb"

# Functions that reach outside the catalog: files, URLs, other databases, settings, secrets,
# system catalogs. Prefixes catch families (duckdb_tables(), pg_read_file(), pragma_*).
_FORBIDDEN = {
    "read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json", "read_json_auto",
    "read_json_objects", "read_ndjson", "read_ndjson_auto", "read_ndjson_objects", "read_text",
    "read_blob", "glob", "sniff_csv", "query_table", "query", "iceberg_scan", "iceberg_metadata",
    "delta_scan", "postgres_scan", "postgres_query", "postgres_execute", "sqlite_scan",
    "sqlite_attach", "mysql_scan", "mysql_query", "parquet_metadata", "parquet_schema",
    "parquet_file_metadata", "parquet_kv_metadata", "read_xlsx", "st_read", "from_csv_auto",
    "read_avro", "json_execute_serialized_sql", "current_setting", "getvariable", "getenv",
    "which_secret", "load_extension", "test_all_types", "checkpoint", "force_checkpoint",
    "enable_profiling", "dblink", "lo_import", "lo_export", "lo_get", "system", "set_config",
    "current_database", "current_schema", "current_schemas", "version", "txid_current",
    "inet_server_addr", "read_file", "readfile", "writefile", "edit", "fts_main",
    "summary", "range_files", "http_get", "http_post", "get_ddl", "result_scan",
}
_FORBIDDEN_PREFIXES = ("duckdb_", "pragma_", "pg_", "sqlite_", "read_", "system$", "information_schema")
_SYSTEM_SCHEMAS = {"information_schema", "pg_catalog", "pg_toast", "sqlite_master", "sqlite_schema",
                   "sqlite_temp_master", "account_usage"}
_SYSTEM_TABLE = re.compile(r"^(sqlite_|duckdb_|pg_|information_schema)", re.IGNORECASE)
_MARKER = re.compile(r"__hwparam(\d+)__", re.IGNORECASE)

_WRITES = tuple(
    getattr(exp, n) for n in ("Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter",
                              "Command", "Pragma", "Set", "Copy", "Attach", "Detach", "Use",
                              "Transaction", "Commit", "Rollback", "Install", "Load", "TruncateTable",
                              "Describe", "Show", "Grant")
    if hasattr(exp, n)
)


def forbidden_function(fn: exp.Func) -> str | None:
    """The function's name when it reaches outside the catalog, else None."""
    if isinstance(fn, exp.Anonymous):
        name = fn.name
    else:
        name = fn.sql_name()
    low = name.lower()
    if low in _FORBIDDEN or low.startswith(_FORBIDDEN_PREFIXES):
        return low
    if type(fn).__name__ in ("ReadCSV", "ReadParquet"):
        return low
    return None


def check_statement(tree: exp.Expression, datasets: Mapping[str, object], first_param: int) -> list[exp.Table]:
    """Reject what no role may run; return the base-table scans of catalogued datasets.

    Raises :class:`QueryRejected` for non-queries, nested writes, outside functions, system
    catalogs, unknown tables and forged parameter markers.
    """
    if not isinstance(tree, exp.Query):
        raise QueryRejected(
            f"{tree.key.upper()} statements are not allowed; queries are SELECT only",
            rule="statement-kind", statement=tree.key.upper(),
        )
    # One walk (breadth first, as ``find``/``find_all``) collects everything; errors keep their
    # precedence: nested writes, then the first marker/function problem, then table problems.
    problem: QueryRejected | None = None
    ctes: set[str] = set()
    tables: list[exp.Table] = []
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise QueryRejected(f"{node.key.upper()} is not allowed inside a query", rule="statement-kind",
                                statement=node.key.upper())
        if isinstance(node, exp.Table):
            tables.append(node)
        elif isinstance(node, exp.CTE):
            ctes.add(node.alias_or_name.lower())
        if problem is not None:
            continue
        if isinstance(node, exp.Var):
            m = _MARKER.fullmatch(node.name)
            if m and int(m.group(1)) < first_param:
                continue
            if m or _MARKER.search(node.name):
                problem = QueryRejected("reserved name __hwparam in query", rule="reserved-name")
        elif isinstance(node, exp.Identifier | exp.Literal):
            if "__" in str(node.this) and _MARKER.search(str(node.this)):
                problem = QueryRejected("reserved name __hwparam in query", rule="reserved-name")
        elif isinstance(node, exp.Func):
            name = forbidden_function(node)
            if name:
                rule = "system-catalog" if name.startswith(("duckdb_", "pg_", "sqlite_", "pragma_")) else "catalog-only"
                problem = QueryRejected(f"function {name}() reaches outside the catalog and is not allowed",
                                        rule=rule, function=name)
    if problem is not None:
        raise problem
    known = {name.lower() for name in datasets}
    scans = []
    for table in tables:
        if not isinstance(table.this, exp.Identifier):
            raise QueryRejected("table functions are not allowed; query datasets by name",
                                rule="catalog-only")
        db = (table.db or "").lower()
        name = table.name.lower()
        if db in _SYSTEM_SCHEMAS or _SYSTEM_TABLE.match(name) or _SYSTEM_TABLE.match(db) or table.args.get("catalog"):
            raise QueryRejected("system catalogs are not available to queries", rule="system-catalog")
        if not db:
            if name in ctes:
                continue
            raise QueryRejected(f"{table.name} is not a catalogued dataset; name datasets as <store>.<table>",
                                rule="catalog-only")
        if f"{db}.{name}" not in known:
            raise QueryRejected(f"{table.db}.{table.name} is not a catalogued dataset", rule="catalog-only")
        scans.append(table)
    return scans
