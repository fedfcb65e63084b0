"""OpenLineage events: facet shapes, _producer/_schemaURL, identity, validation, the shipped
copy of the specification, and the HTTP transport against a loopback server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from headwater.lineage import (
    FACET_SCHEMA_URLS,
    PRODUCER,
    RUN_EVENT_SCHEMA_URL,
    HttpTransport,
    IdentityMap,
    InvalidLineageEvent,
    LineageDeliveryError,
    build_fail_event,
    build_run_events,
    column_lineage,
    dataset_identity,
    default_validator,
    postgres_identity,
)
from headwater.lineage._validate import SPEC_DIR

from .conftest import conformance_dir

SCHEMA = {
    "app.orders": {"o_id": "BIGINT", "o_cust": "BIGINT", "amount": "DOUBLE"},
    "app.customers": {"c_id": "BIGINT", "email": "VARCHAR"},
}
SQL = ("CREATE TABLE warehouse.order_facts AS SELECT o.o_id, c.email AS customer_email, sum(o.amount) AS total "
       "FROM app.orders o JOIN app.customers c ON o.o_cust = c.c_id GROUP BY o.o_id, c.email")


@pytest.fixture
def events():
    r = column_lineage(SQL, schema=SCHEMA)
    return r, *build_run_events("headwater://test", "demo.order_facts", SQL, r, schemas=SCHEMA, rows_written=7)


def test_start_and_complete_shape(events, conformance):
    r, start, complete = events
    assert start["eventType"] == "START" and complete["eventType"] == "COMPLETE"
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert start["schemaURL"] == RUN_EVENT_SCHEMA_URL and start["producer"] == PRODUCER
    assert [d["name"] for d in start["inputs"]] == ["app.customers", "app.orders"]
    assert {d["namespace"] for d in start["inputs"] + start["outputs"]} == {"headwater://default"}
    job = start["job"]["facets"]
    assert job["sql"]["query"] == SQL and job["sql"]["dialect"] == "duckdb"
    out = complete["outputs"][0]
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 7
    assert [f["name"] for f in out["facets"]["schema"]["fields"]] == ["o_id", "customer_email", "total"]
    inp = start["inputs"][1]["facets"]["schema"]["fields"]
    assert inp[0] == {"name": "o_id", "type": "BIGINT", "ordinal_position": 1}
    cl = out["facets"]["columnLineage"]
    assert cl["fields"]["total"]["inputFields"] == [{
        "namespace": "headwater://default", "name": "app.orders", "field": "amount",
        "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION"}],
    }]
    joins = {(f["name"], f["field"]): [t["subtype"] for t in f["transformations"]] for f in cl["dataset"]}
    assert joins[("app.orders", "o_cust")] == ["JOIN"] and joins[("app.customers", "c_id")] == ["JOIN"]
    for ev in (start, complete):
        assert conformance.errors(ev) == []


def test_every_facet_names_producer_and_its_schema(events, conformance):
    _, start, complete = events
    facets = [*start["job"]["facets"].items()]
    for ds in complete["inputs"] + complete["outputs"]:
        facets += [*ds.get("facets", {}).items(), *ds.get("outputFacets", {}).items()]
    assert {k for k, _ in facets} >= {"sql", "jobType", "schema", "columnLineage", "outputStatistics"}
    for key, f in facets:
        assert f["_producer"] == PRODUCER
        assert f["_schemaURL"] == FACET_SCHEMA_URLS[key]
        # the URL names a schema file of the specification, and a definition inside it
        base, _, pointer = f["_schemaURL"].partition("#")
        assert base in conformance.ids and pointer.startswith("/$defs/")


def test_fail_event(conformance):
    r = column_lineage(SQL, schema=SCHEMA)
    try:
        raise RuntimeError("disk full")
    except RuntimeError as err:
        start, fail = build_fail_event("headwater://test", "j", SQL, r, schemas=SCHEMA, error=err)
    facet = fail["run"]["facets"]["errorMessage"]
    assert fail["eventType"] == "FAIL" and facet["message"] == "RuntimeError: disk full"
    assert facet["programmingLanguage"] == "PYTHON" and "disk full" in facet["stackTrace"]
    assert conformance.errors(start) == [] and conformance.errors(fail) == []


def test_gaps_become_an_extraction_error_facet(conformance):
    sql = "CREATE TABLE warehouse.t AS SELECT x FROM app.mystery"
    r = column_lineage(sql, schema=SCHEMA)
    start, complete = build_run_events("headwater://test", "j", sql, r)
    facet = complete["run"]["facets"]["extractionError"]
    assert facet["errors"][0]["errorMessage"] == r.gaps[0] and facet["totalTasks"] == 1
    assert conformance.errors(complete) == []


def test_plain_query_with_target(conformance):
    sql = "SELECT email FROM app.customers WHERE c_id > 3"
    r = column_lineage(sql, schema=SCHEMA, target="lake.emails")
    start, complete = build_run_events("headwater://test", "sdk.write", sql, r)
    assert complete["outputs"][0]["name"] == "lake.emails"
    assert "email" in complete["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert conformance.errors(complete) == []


def test_invalid_events_are_rejected_with_reasons(events, conformance):
    _, _, complete = events
    bad = json.loads(json.dumps(complete))
    bad["run"]["runId"] = "not-a-uuid"
    bad["producer"] = "not a uri"
    errs = conformance.errors(bad)
    assert any("runId" in e for e in errs) and any("producer" in e for e in errs)
    bad = json.loads(json.dumps(complete))
    del bad["outputs"][0]["facets"]["columnLineage"]["fields"]["total"]["inputFields"][0]["field"]
    assert any("field" in e and "columnLineage" in e for e in conformance.errors(bad))
    with pytest.raises(InvalidLineageEvent) as info:
        conformance.validate(bad)
    assert info.value.errors


def test_shipped_spec_is_the_conformance_spec():
    shared = conformance_dir()
    if not shared.exists():
        pytest.skip(f"{shared} not found")
    for path in shared.rglob("*.json"):
        assert (SPEC_DIR / path.relative_to(shared)).read_bytes() == path.read_bytes(), path
    assert default_validator().ids == {json.loads(p.read_text())["$id"] for p in shared.rglob("*.json")}


# -- identity --------------------------------------------------------------------------
def test_dataset_identity_and_postgres_names():
    assert dataset_identity("app.customers", platform="prod") == ("headwater://prod", "app.customers")
    assert postgres_identity("host=db port=6543 dbname=shop user=u", "public", "customers") == (
        "postgres://db:6543", "shop.public.customers")
    assert postgres_identity("postgresql://u@db/shop", "s", "t") == ("postgres://db:5432", "shop.s.t")


def test_identity_map_normalises_other_producers(conformance):
    ids = IdentityMap("prod")
    ids.add_postgres_store("app", "host=127.0.0.1 port=5432 dbname=test", "public")
    ids.add_alias("snowflake://acct", "DB.PUBLIC.ORDERS", "warehouse.orders")
    assert ids.canonical("postgres://127.0.0.1:5432", "test.public.customers") == ("headwater://prod", "app.customers")
    assert ids.canonical("postgres://127.0.0.1:5432", "other.public.customers") == (
        "postgres://127.0.0.1:5432", "other.public.customers")
    assert ids.canonical("x", "y", {"symlinks": {"identifiers": [
        {"namespace": "headwater://prod", "name": "lake.y", "type": "TABLE"}]}}) == ("headwater://prod", "lake.y")
    event = {
        "eventType": "COMPLETE", "eventTime": "2026-01-01T00:00:00Z",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.30.0/integration/spark",
        "schemaURL": RUN_EVENT_SCHEMA_URL, "run": {"runId": "0195a7d4-0000-7000-8000-000000000001"},
        "job": {"namespace": "spark", "name": "etl"},
        "inputs": [{"namespace": "postgres://127.0.0.1:5432", "name": "test.public.customers"}],
        "outputs": [{"namespace": "snowflake://acct", "name": "DB.PUBLIC.ORDERS", "facets": {"columnLineage": {
            "_producer": "https://github.com/OpenLineage/OpenLineage/tree/1.30.0/integration/spark",
            "_schemaURL": FACET_SCHEMA_URLS["columnLineage"],
            "fields": {"email": {"inputFields": [{"namespace": "postgres://127.0.0.1:5432",
                                                   "name": "test.public.customers", "field": "email"}]}}}}}],
    }
    out, rewrites = ids.normalise_event(event, producer=PRODUCER)
    assert out["inputs"][0]["namespace"] == "headwater://prod" and out["inputs"][0]["name"] == "app.customers"
    assert out["inputs"][0]["facets"]["symlinks"]["identifiers"] == [
        {"namespace": "postgres://127.0.0.1:5432", "name": "test.public.customers", "type": "TABLE"}]
    assert out["outputs"][0]["name"] == "warehouse.orders"
    field = out["outputs"][0]["facets"]["columnLineage"]["fields"]["email"]["inputFields"][0]
    assert (field["namespace"], field["name"]) == ("headwater://prod", "app.customers")
    assert len(rewrites) == 2 and event["inputs"][0]["name"] == "test.public.customers"  # input untouched
    assert conformance.errors(out) == []


def test_emitted_datasets_carry_known_aliases(conformance):
    ids = IdentityMap("prod")
    ids.add_postgres_store("app", "host=pg dbname=test", "public")
    r = column_lineage(SQL, schema=SCHEMA)
    start, _ = build_run_events("headwater://prod", "j", SQL, r, identity=ids)
    links = {d["name"]: d.get("facets", {}).get("symlinks") for d in start["inputs"]}
    assert links["app.orders"]["identifiers"] == [
        {"namespace": "postgres://pg:5432", "name": "test.public.orders", "type": "TABLE"}]
    assert conformance.errors(start) == []


# -- HTTP transport --------------------------------------------------------------------
class _Collector(BaseHTTPRequestHandler):
    received: list = []
    status = 201

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers.get("Authorization"), json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def endpoint():
    _Collector.received = []
    _Collector.status = 201
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v1/lineage"
    finally:
        server.shutdown()
        server.server_close()


def test_http_transport_posts_events(endpoint, events):
    _, start, _ = events
    t = HttpTransport(endpoint, api_key="s3cret")
    assert "s3cret" not in repr(t)
    t.send(start)
    ((path, auth, body),) = _Collector.received
    assert path == "/api/v1/lineage" and auth == "Bearer s3cret" and body == start


def test_http_transport_errors(endpoint, events):
    _, start, _ = events
    _Collector.status = 500
    with pytest.raises(LineageDeliveryError) as info:
        HttpTransport(endpoint, api_key="s3cret").send(start)
    assert info.value.status == 500 and "s3cret" not in str(info.value)
    with pytest.raises(LineageDeliveryError):
        HttpTransport("http://127.0.0.1:9/nothing", timeout_s=1).send(start)


def test_spec_dir_ships_with_package():
    assert (Path(SPEC_DIR) / "OpenLineage.json").exists() and (Path(SPEC_DIR) / "LICENSE").exists()


def test_run_event_check_agrees_with_the_event_schema(events, conformance):
    # errors() checks a run event against RunEvent directly; the spec's oneOf must agree.
    _, start, complete = events
    no_time = {k: v for k, v in complete.items() if k != "eventTime"}
    bad_type = {**start, "eventType": "SOMETIMES"}
    with_dataset = {**start, "dataset": {"namespace": "n", "name": "d"}}
    for ev in (start, complete, no_time, bad_type, with_dataset):
        assert (list(conformance._core.iter_errors(ev)) == []) == (conformance.errors(ev) == [])
