"""LineageStore on SQLite and Postgres metadata stores: events and edges stored, upstream,
downstream and impact to any depth, one node per dataset across producers, the write-path
context manager, HTTP delivery, and the migration agreeing with the table objects."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa

from headwater.lineage import (
    FACET_SCHEMA_URLS,
    RUN_EVENT_SCHEMA_URL,
    InvalidLineageEvent,
    LineageStore,
    build_run_events,
    column_lineage,
)
from headwater.lineage._tables import METADATA as LINEAGE_METADATA

SCHEMA = {
    "app.orders": {"o_id": "BIGINT", "o_cust": "BIGINT", "amount": "DOUBLE", "status": "VARCHAR"},
    "app.customers": {"c_id": "BIGINT", "email": "VARCHAR", "name": "VARCHAR", "region": "VARCHAR"},
    "warehouse.order_facts": {"o_id": "BIGINT", "customer_email": "VARCHAR", "cname": "VARCHAR",
                              "amount": "DOUBLE"},
    "warehouse.by_region": {"region": "VARCHAR", "total": "DOUBLE"},
}
ORDER_FACTS = (
    "CREATE TABLE warehouse.order_facts AS SELECT o.o_id, c.email AS customer_email, "
    "upper(c.name) AS cname, o.amount FROM app.orders o JOIN app.customers c ON o.o_cust = c.c_id "
    "WHERE o.status = 'done'"
)
BY_REGION = (
    "INSERT INTO warehouse.by_region SELECT c.region, sum(f.amount) AS total FROM warehouse.order_facts f "
    "JOIN app.customers c ON f.customer_email = c.email GROUP BY c.region"
)
MAILING = "CREATE TABLE lake.mailing AS SELECT lower(customer_email) AS addr FROM warehouse.order_facts"


@pytest.fixture
def graph(lineage: LineageStore) -> LineageStore:
    for job, sql in (("demo.order_facts", ORDER_FACTS), ("demo.by_region", BY_REGION),
                     ("demo.mailing", MAILING)):
        with lineage.track(sql, schema=SCHEMA, job_name=job) as run:
            run.rows_written = 3
    return lineage


def test_events_are_stored_raw_and_validate(graph: LineageStore, conformance):
    events = graph.events()
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 3
    assert all(conformance.errors(e) == [] for e in events)
    assert graph.events(job_name="demo.by_region")[1]["outputs"][0]["name"] == "warehouse.by_region"
    run_id = events[0]["run"]["runId"]
    assert len(graph.events(run_id=run_id)) == 2


def test_upstream_of_dataset_names_sources_down_to_columns(graph: LineageStore):
    g = graph.upstream("warehouse.order_facts")
    assert g.datasets == ["app.customers", "app.orders"]
    assert g.columns == ["app.customers.c_id", "app.customers.email", "app.customers.name",
                         "app.orders.amount", "app.orders.o_cust", "app.orders.o_id", "app.orders.status"]
    edge = next(e for e in g.edges if e.source == "app.customers.name")
    assert (edge.target, edge.type, edge.subtype) == ("warehouse.order_facts.cname", "DIRECT", "TRANSFORMATION")


def test_upstream_of_column_any_depth_and_limited(graph: LineageStore):
    g = graph.upstream("warehouse.by_region.total")
    assert "app.orders.amount" in g.columns  # two hops
    assert "warehouse.order_facts.amount" in g.columns
    assert "app.customers.region" in g.columns  # GROUP BY: whole-dataset edge
    assert "app.orders.status" in g.columns  # the filter inside order_facts, two hops up
    one = graph.upstream("warehouse.by_region.total", depth=1)
    assert "app.orders.amount" not in one.columns and "warehouse.order_facts.amount" in one.columns
    assert {n.depth for n in g.nodes} == {0, 1, 2}
    assert graph.upstream("warehouse.by_region.total", depth=0).columns == []


def test_downstream_and_impact(graph: LineageStore):
    g = graph.impact("app.customers.email")
    assert "warehouse.order_facts.customer_email" in g.columns
    assert "lake.mailing.addr" in g.columns  # through order_facts.customer_email
    # by_region joins on customer_email: all of it depends on email
    assert g.datasets == ["lake.mailing", "warehouse.by_region", "warehouse.order_facts"]
    # name feeds only cname, which nothing reads
    assert graph.impact("app.customers.name").columns == ["warehouse.order_facts.cname"]
    assert graph.impact("app.customers.name").datasets == ["warehouse.order_facts"]
    d = graph.downstream("app.orders", depth=1)
    assert d.datasets == ["warehouse.order_facts"]
    assert set(graph.downstream("app.orders").datasets) == {"warehouse.order_facts", "warehouse.by_region",
                                                            "lake.mailing"}


def test_a_new_complete_replaces_the_jobs_edges(graph: LineageStore):
    with graph.track("CREATE TABLE lake.mailing AS SELECT lower(name) AS addr FROM app.customers",
                     schema=SCHEMA, job_name="demo.mailing"):
        pass
    g = graph.upstream("lake.mailing.addr")
    assert g.columns == ["app.customers.name"]
    assert graph.impact("app.customers.email").columns == ["warehouse.order_facts.customer_email"]


def test_failed_run_stores_fail_and_no_edges(lineage: LineageStore):
    with pytest.raises(ZeroDivisionError):
        with lineage.track(ORDER_FACTS, schema=SCHEMA, job_name="j"):
            1 / 0  # noqa: B018
    assert [e["eventType"] for e in lineage.events()] == ["START", "FAIL"]
    assert lineage.events()[1]["run"]["facets"]["errorMessage"]["message"].startswith("ZeroDivisionError")
    assert lineage.upstream("warehouse.order_facts").datasets == []


def test_invalid_event_is_rejected_and_not_stored(lineage: LineageStore):
    r = column_lineage(ORDER_FACTS, schema=SCHEMA)
    _, complete = build_run_events("headwater://test", "j", ORDER_FACTS, r)
    complete["run"]["runId"] = "nope"
    with pytest.raises(InvalidLineageEvent):
        lineage.emit(complete)
    assert lineage.events() == []


def test_one_node_per_dataset_across_producers(graph: LineageStore, meta, conformance):
    graph.identity.add_postgres_store("app", "host=127.0.0.1 port=5432 dbname=test", "public")
    foreign = "https://github.com/OpenLineage/OpenLineage/tree/1.30.0/integration/dbt"
    pg = "postgres://127.0.0.1:5432"
    graph.emit({
        "eventType": "COMPLETE", "eventTime": "2026-01-01T00:00:00Z", "producer": foreign,
        "schemaURL": RUN_EVENT_SCHEMA_URL, "run": {"runId": "0195a7d4-0000-7000-8000-000000000002"},
        "job": {"namespace": "dbt", "name": "vip"},
        "inputs": [{"namespace": pg, "name": "test.public.customers"}],
        "outputs": [{"namespace": pg, "name": "test.public.vip", "facets": {"columnLineage": {
            "_producer": foreign, "_schemaURL": FACET_SCHEMA_URLS["columnLineage"],
            "fields": {"email": {"inputFields": [
                {"namespace": pg, "name": "test.public.customers", "field": "email",
                 "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]}]}}}}}],
    })
    # the dbt job's customers is Headwater's app.customers: one node, now feeding app.vip too
    assert "app.vip.email" in graph.impact("app.customers.email").columns
    assert "test.public.customers" not in json.dumps(graph.impact("app.customers").to_dict())
    assert graph.upstream("app.vip").datasets == ["app.customers"]
    # the alias is persisted: a second store on the same metadata resolves the physical name
    again = LineageStore(meta, platform="test")
    assert again.upstream((pg, "test.public.vip")).datasets == ["app.customers"]


def test_unknown_nodes_are_empty(lineage: LineageStore):
    g = lineage.upstream("nope.nothing.col")
    assert g.datasets == [] and g.columns == [] and g.root == "nope.nothing.col"
    with pytest.raises(Exception):  # noqa: B017 - NotFound
        lineage.require("nope.nothing")


def test_migration_matches_table_objects(meta):
    insp = sa.inspect(meta.engine)
    for table in LINEAGE_METADATA.sorted_tables:
        cols = {c["name"]: c for c in insp.get_columns(table.name)}
        assert set(cols) == {c.name for c in table.columns}, table.name
        for c in table.columns:
            assert cols[c.name]["nullable"] == (c.nullable and not c.primary_key), (table.name, c.name)
        assert {i["name"] for i in insp.get_indexes(table.name)} == {i.name for i in table.indexes}


class _Sink(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_emit_delivers_over_http_and_records_failures(sqlite_meta, conformance):
    _Sink.received = []
    server = HTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = LineageStore(sqlite_meta, url=f"http://127.0.0.1:{server.server_port}/api/v1/lineage",
                             validator=conformance)
        with store.track(ORDER_FACTS, schema=SCHEMA, job_name="j"):
            pass
        assert _Sink.received == ["/api/v1/lineage"] * 2
    finally:
        server.shutdown()
        server.server_close()
    # endpoint gone: the write path is not broken, the event is stored as undelivered
    with store.track(ORDER_FACTS, schema=SCHEMA, job_name="j2"):
        pass
    with sqlite_meta.connect() as conn:
        delivered = [r[0] for r in conn.execute(sa.text("SELECT delivered FROM hw_lineage_events ORDER BY id"))]
    assert [bool(d) for d in delivered] == [True, True, False, False]
