"""A platform holding one customer in many places, for erasure tests.

* ``app.customers``: the source (id, email tagged ``pii.email``, name, country);
* ``app.orders``: orders with ``customer_id`` (a foreign key, not lineage: left alone);
* ``warehouse.dim_customer``: ``CREATE TABLE ... AS SELECT id AS customer_id ...``;
* ``warehouse.by_country``: an aggregate (not subject-addressable);
* ``lake.customer_export``: a Parquet dataset written from a query over the warehouse;
* ``warehouse.customers_replica``: a CDC replica (``_lsn``, ``_seq``, ``_deleted``);
* dead letters: a Debezium change of customer 7 on ``cdc.app.public.customers``, an order event
  naming ``customer_id: 7``, an order event whose own ``id`` is 7 (not the customer), one for
  customer 8, and one whose bytes are not JSON.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from headwater import Config, Platform
from headwater.config import ParquetConfig, PostgresConfig, S3Config
from headwater.events.dlq import DeadLetterStore
from headwater.events.envelope import Event

SUBJECT = "customers.id=7"
N = 20
SUBJECT_EMAIL = "person7@example.com"


def customers() -> list[dict[str, Any]]:
    return [{"id": i, "email": f"person{i}@example.com", "name": f"Person {i}",
             "country": ["DE", "FR", "NL"][i % 3]} for i in range(1, N + 1)]


def orders() -> list[dict[str, Any]]:
    return [{"id": i, "customer_id": (i % N) + 1, "amount": float(i)} for i in range(1, 41)]


def seed(platform: Platform) -> dict[str, int]:
    """Load every copy; returns the dead-letter ids by role."""
    s = platform.session("etl")
    s.write("app.customers", customers(), key="id")
    platform.catalog.set_tags("app.customers", "email", ["pii.email"])
    s.write("app.orders", orders(), key="id")
    s.sql("CREATE TABLE warehouse.dim_customer AS "
          "SELECT id AS customer_id, email, country FROM app.customers")
    s.sql("CREATE TABLE warehouse.by_country AS SELECT country, count(*) AS n FROM app.customers GROUP BY country")
    s.write("lake.customer_export", s.sql("SELECT customer_id, email FROM warehouse.dim_customer"))
    s.write("warehouse.customers_replica",
            [{**c, "_lsn": 100 + c["id"], "_seq": 0, "_deleted": False} for c in customers()], key="id")
    dlq = DeadLetterStore.for_platform(platform)

    def dead(event: Event | bytes, topic: str, offset: int) -> int:
        raw = event if isinstance(event, bytes) else event.to_json()
        return dlq.add(raw, stage="handle", error=("ValueError", "handler failed"), attempts=3,
                       consumer_group="g", topic=topic, partition=0, offset=offset).id

    return {
        "cdc_7": dead(Event(type="io.debezium.change", source="/cdc/app",
                            data={"op": "u", "before": None, "after": {"id": 7, "email": SUBJECT_EMAIL}}),
                      "cdc.app.public.customers", 1),
        "order_of_7": dead(Event(type="shop.order.created", source="/shop/orders",
                                 data={"id": 99, "customer_id": 7, "amount": 3.5}), "orders", 2),
        "order_7": dead(Event(type="shop.order.created", source="/shop/orders",
                              data={"id": 7, "customer_id": 2, "amount": 1.0}), "orders", 3),
        "cdc_8": dead(Event(type="io.debezium.change", source="/cdc/app",
                            data={"op": "u", "after": {"id": 8, "email": "person8@example.com"}}),
                      "cdc.app.public.customers", 4),
        "garbage": dead(b"\xff\x00not json", "orders", 5),
    }


def count(platform: Platform, dataset: str, where: str = "TRUE", params: Any = None) -> int:
    return platform.session("auditor").sql(f"SELECT count(*) AS n FROM {dataset} WHERE {where}",
                                           params).to_pylist()[0]["n"]


def pg_s3_config(tmp_path: Path, dsn: str, schema: str, s3: dict[str, Any], *, s3_endpoint: str | None = None,
                 pg_dsn: str | None = None, meta_url: str | None = None) -> Config:
    """Postgres ``app`` (and metadata, given ``meta_url``), DuckDB ``warehouse``, S3 ``lake``
    (moto); the store endpoints can be overridden with dead ones."""
    from headwater.config import MetadataConfig

    cfg = Config.embedded(tmp_path / "hw")
    if meta_url is not None:
        cfg.metadata = MetadataConfig(url=meta_url)
    cfg.stores["app"] = PostgresConfig(dsn=pg_dsn or dsn, schema=schema, connect_timeout_s=2)
    cfg.stores["lake"] = ParquetConfig(
        root=f"s3://{s3['bucket']}/erasure-{tmp_path.name}",
        s3=S3Config(endpoint_url=s3_endpoint or s3["endpoint_url"], region=s3["region"],
                    access_key_id=s3["access_key_id"], secret_access_key=s3["secret_access_key"]))
    return cfg


@contextlib.contextmanager
def pg_schema(dsn: str) -> Iterator[str]:
    from tests.fix_services import pg_fresh_schema

    with pg_fresh_schema(dsn) as schema:
        yield schema


def lake_files_text(platform: Platform, table: str) -> str:
    """Every value of every Parquet file under a lake dataset's folder (manifest or not)."""
    import pyarrow.parquet as pq

    store = platform.store("lake")
    fs = store.fs
    base = store._dir(table)
    import pyarrow.fs as pafs

    out = []
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
            with fs.open_input_file(info.path) as f:
                out.append(str(pq.read_table(f).to_pylist()))
    return "\n".join(out)


def new_id() -> str:
    return uuid.uuid4().hex[:8]


# -- distinctive values, for byte scans ---------------------------------------------------
def token(n: int = 24) -> str:
    """A random alphanumeric value: long and varied enough that compression (snappy, FSST)
    does not split it, so a byte scan that finds it proves the scan can see values."""
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


PII_ROWS = 12
"""Customers of :func:`seed_pii`; 7 is the subject, 8 the control (both archived by retention)."""


def seed_pii(platform: Platform, *, capture: bool = True) -> dict[int, dict[str, str]]:
    """Every copy the platform writes of customers with distinctive email and name values:

    * ``app.customers`` with SQLite change capture (``_hw_changes`` holds full row images of an
      update of every row) when the app store is SQLite and ``capture``;
    * ``warehouse.dim_customer`` (CTAS), ``warehouse.customers_replica`` (a CDC replica),
      ``lake.customer_export`` (a query result on the lake);
    * a retention archive of customers 7 and 8 (older than the policy keeps);
    * dead letters of 7 and 8 in clear, and sealed under each one's subject key.

    Returns each customer's ``{"email", "name"}`` values."""
    import datetime as dt

    from headwater.retention import RetentionEngine

    values = {i: {"email": f"{token()}@example.com", "name": token()} for i in range(1, PII_ROWS + 1)}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    rows = [{"id": i, "email": v["email"], "name": v["name"], "country": "DE",
             "created_at": now - dt.timedelta(days=400 if i in (7, 8) else 1)} for i, v in values.items()]
    s = platform.session("etl")
    s.write("app.customers", [{**r, "name": "pending"} for r in rows], key="id")
    platform.catalog.set_tags("app.customers", "email", ["pii.email"])
    if capture and platform.store("app").kind == "sqlite":
        from headwater.cdc.sqlite import SQLiteCDC

        SQLiteCDC(platform.store("app"), bus=platform.bus, tables=["customers"]).ensure_capture()
    s.write("app.customers", rows, mode="upsert", key="id")  # captured: before and after images
    s.sql("CREATE TABLE warehouse.dim_customer AS SELECT id AS customer_id, email, name FROM app.customers")
    s.write("warehouse.customers_replica",
            [{"id": r["id"], "email": r["email"], "name": r["name"], "_lsn": 100 + r["id"], "_seq": 0,
              "_deleted": False} for r in rows], key="id")
    s.write("lake.customer_export", s.sql("SELECT customer_id, email, name FROM warehouse.dim_customer"))
    RetentionEngine(platform).apply("version: 1\ndefaults:\n  archive: lake\nrules:\n"
                                    "  - dataset: app.customers\n    by: created_at\n    keep: 365d\n", actor="ops")
    dlq = DeadLetterStore.for_platform(platform)
    keys = platform.subject_keys
    for i in (7, 8):
        clear = Event(type="io.debezium.change", source="/cdc/app",
                      data={"op": "u", "after": {"id": i, "email": values[i]["email"]}})
        sealed = Event(type="customer.updated", source="/shop",
                       data={"ref": keys.seal_text("app.customers.id", i, str(i)),
                             "email": keys.seal_text("app.customers.id", i, values[i]["email"])})
        for n, ev in enumerate((clear, sealed)):
            dlq.add(ev.to_json(), stage="handle", error=("ValueError", "handler failed"), attempts=1,
                    consumer_group="g", topic="cdc.app.main.customers" if n == 0 else "shop", partition=0,
                    offset=i * 10 + n)
    return values


def platform_files(root: Path) -> list[Path]:
    """Every file under the platform folder (databases, WAL and journal files, lake, archives)."""
    return sorted(f for f in root.rglob("*") if f.is_file())


def scan_bytes(files: list[Path], needles: list[str]) -> dict[str, list[str]]:
    """For each needle, the files whose bytes hold it; Parquet files are also decoded (their
    pages are compressed), so a value in one is found either way."""
    import pyarrow.parquet as pq

    found: dict[str, list[str]] = {n: [] for n in needles}
    for f in files:
        data = f.read_bytes()
        text = b""
        if f.suffix == ".parquet":
            try:
                text = str(pq.read_table(f).to_pylist()).encode()
            except Exception:  # noqa: BLE001 - a file being rewritten: its raw bytes still count
                text = b""
        for n in needles:
            if n.encode() in data or n.encode() in text:
                found[n].append(str(f))
    return found
