"""OpenLineage over HTTP on a real server, with a policy: openlineage-python's own client posting
to ``POST /api/v1/lineage``, the lineage.write grant, outside producers kept apart from the
platform's lineage, reads filtered by dataset grants, SQL without literals, capped inflation."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
import zlib
from collections.abc import Iterator

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import column_lineage_dataset
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)

from headwater import Config, Platform
from headwater.service import ServiceConfig
from tests.lineage._gov import SSN, event, forged_identity, seed
from tests.service.conftest import Served, serve

NS = "headwater://default"
CAP = 64 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Customers, a platform-derived ``warehouse.copy``, the lineage policy of
    :mod:`tests.lineage._gov`, and a server that inflates bodies to at most 64 KiB."""
    platform = Platform.open(Config.embedded(tmp_path_factory.mktemp("ol") / "hw"))
    seed(platform)
    out = Served(platform=platform, base_url="")
    for who in ("alice", "bob", "etl", "mallory"):
        out.tokens[who] = platform.create_api_key(who).token
    with serve(platform, ServiceConfig(rate_enabled=False, max_inflated_bytes=CAP)) as server:
        out.base_url = server.base_url
        yield out
    platform.close()


def _client(served: Served, who: str = "etl", *, compression: HttpCompression | None = None) -> OpenLineageClient:
    config = HttpConfig(url=served.base_url, auth=ApiKeyTokenProvider({"apiKey": served.tokens[who]}),
                        compression=compression, retry={"total": 0})
    return OpenLineageClient(transport=HttpTransport(config))


def _event(state: RunState, run_id: str, namespace: str = "airflow://prod") -> RunEvent:
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(fields={
        "total": column_lineage_dataset.Fields(
            inputFields=[column_lineage_dataset.InputField(namespace=NS, name="warehouse.orders", field="amount")],
            transformationType="", transformationDescription=""),
    })
    return RunEvent(
        eventType=state,
        eventTime=dt.datetime.now(dt.UTC).isoformat(),
        run=Run(runId=run_id),
        job=Job(namespace=namespace, name="daily_totals"),
        producer="https://github.com/OpenLineage/OpenLineage/tree/1.0.0/client/python",
        inputs=[InputDataset(namespace=NS, name="warehouse.orders")],
        outputs=[OutputDataset(namespace=NS, name="lake.daily_totals", facets={"columnLineage": lineage})],
    )


def _post(served: Served, who: str, body: object, **headers: str):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    with served.client() as c:
        return c.post("/api/v1/lineage", content=data,
                      headers={**served.key(who), "Content-Type": "application/json", **headers})


def _get(served: Served, who: str, path: str, **params: object):
    with served.client() as c:
        return c.get(path, params=params, headers=served.key(who))


@pytest.mark.parametrize("compression", [None, HttpCompression.GZIP])
def test_openlineage_client_events_reach_the_lineage_routes(served: Served, compression: HttpCompression | None) -> None:
    run_id = str(uuid.uuid4())
    client = _client(served, compression=compression)
    client.emit(_event(RunState.START, run_id))
    client.emit(_event(RunState.COMPLETE, run_id))
    events = _get(served, "alice", "/v1/lineage/events", run_id=run_id).json()
    up = _get(served, "alice", "/v1/lineage/lake.daily_totals/upstream").json()
    col = _get(served, "alice", "/v1/lineage/warehouse.orders.amount/downstream").json()
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert (events[0]["job"]["namespace"], events[0]["job"]["name"]) == ("airflow://prod", "daily_totals")
    assert "warehouse.orders" in up["datasets"]
    assert "lake.daily_totals.total" in col["columns"]
    edge = next(e for e in col["edges"] if e["target"] == "lake.daily_totals.total")
    assert edge["trusted"] is False and edge["producer"] == "etl"


def test_posting_needs_the_lineage_write_grant(served: Served) -> None:
    forged = forged_identity()
    for who in ("mallory", "bob"):
        r = _post(served, who, forged)
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "AccessDenied"
    with pytest.raises(Exception, match="403"):
        _client(served, "bob").emit(_event(RunState.START, str(uuid.uuid4())))
    denials = [r for r in served.platform.audit.query(actor="mallory") if r.decision == "deny"]
    assert denials and denials[-1].extra["attempted"] == "lineage_write"
    assert served.platform.lineage.events(run_id=forged["run"]["runId"]) == []


def test_the_platform_namespace_is_refused_and_forged_edges_are_untrusted(served: Served) -> None:
    lineage = served.platform.lineage
    trusted = {e.target for e in lineage.copies_of("app.customers", "id")}
    assert trusted == {"warehouse.copy.id"}
    r = _post(served, "alice", event(NS, "alice.create.warehouse.copy", outputs=[("warehouse.copy", {})]))
    assert r.status_code == 403 and "reserved" in r.json()["detail"]
    assert _post(served, "etl", forged_identity(job="http-forge")).status_code == 201
    assert {e.target for e in lineage.copies_of("app.customers", "id")} == trusted
    down = _get(served, "alice", "/v1/lineage/app.customers.id/downstream", depth=1).json()
    assert {(e["target"], e["trusted"]) for e in down["edges"] if e["type"] == "DIRECT"} >= {
        ("warehouse.copy.id", True), ("app.accounts.id", False)}


def test_reposting_without_column_lineage_erases_nothing(served: Served) -> None:
    job = ("airflow://prod", "http-nightly")
    first = event(*job, inputs=["app.customers"], outputs=[("warehouse.copy", {"email": [("app.customers", "email")]})])
    assert _post(served, "etl", first).status_code == 201
    again = event(*job, outputs=[("warehouse.copy", None)])
    assert _post(served, "etl", again).status_code == 201
    up = _get(served, "alice", "/v1/lineage/warehouse.copy.email/upstream", depth=1).json()
    assert {(e["source"], e["producer"]) for e in up["edges"] if e["type"] == "DIRECT"} == {
        ("app.customers.email", ""), ("app.customers.email", "etl")}


def test_reads_show_only_granted_datasets(served: Served) -> None:
    r = _get(served, "bob", "/v1/lineage/warehouse.copy/upstream")
    assert r.status_code == 200
    doc = r.json()
    assert doc["hidden"] >= 1 and doc["datasets"] == [] and "app." not in r.text and "customers" not in r.text
    assert any(n["hidden"] and n["dataset"].startswith("<hidden dataset") for n in doc["nodes"])
    denied = _get(served, "bob", "/v1/lineage/app.customers/downstream")
    assert denied.status_code == 403 and denied.json()["code"] == "AccessDenied"
    events = _get(served, "bob", "/v1/lineage/events").json()
    assert "app.customers" not in json.dumps(events)
    assert _get(served, "mallory", "/v1/lineage/events").json() == []


def test_sql_facets_are_stored_and_returned_without_literals(served: Served) -> None:
    body = event("airflow://prod", "http-leaky", inputs=["warehouse.copy"], outputs=[("warehouse.leak", None)],
                 sql="INSERT INTO warehouse.leak SELECT * FROM warehouse.copy WHERE email = 'victim@example.com'")
    assert _post(served, "etl", body).status_code == 201
    got = _get(served, "bob", "/v1/lineage/events", job_name="http-leaky").json()
    assert got and "victim@example.com" not in json.dumps(got)
    mine = _get(served, "alice", "/v1/lineage/events", job_name="alice.create.warehouse.copy").json()
    assert mine and SSN not in json.dumps(mine) and "ssn = ?" in mine[0]["job"]["facets"]["sql"]["query"]


def test_compressed_bodies_are_inflated_with_a_cap(served: Served) -> None:
    ok = event("airflow://prod", "gz", outputs=[("warehouse.copy", None)])
    raw = json.dumps(ok).encode()
    assert _post(served, "etl", gzip.compress(raw), **{"Content-Encoding": "gzip"}).status_code == 201
    assert _post(served, "etl", zlib.compress(raw), **{"Content-Encoding": "deflate"}).status_code == 201
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = raw_deflate.compress(raw) + raw_deflate.flush()
    assert _post(served, "etl", body, **{"Content-Encoding": "deflate"}).status_code == 201
    # a bomb: ~100 MB of zeros in ~100 KB; refused as soon as it passes the cap
    bomb = gzip.compress(b" " * (100 * 1024 * 1024), compresslevel=9)
    for coding, payload in (("gzip", bomb), ("deflate", zlib.compress(b" " * (CAP + 1)))):
        r = _post(served, "etl", payload, **{"Content-Encoding": coding})
        assert r.status_code == 413 and r.json()["code"] == "PayloadTooLarge", coding
    # two gzip members whose sum passes the cap
    half = gzip.compress(b" " * (CAP // 2 + 10))
    assert _post(served, "etl", half + half, **{"Content-Encoding": "gzip"}).status_code == 413
    for coding, payload in (("gzip", b"not gzip"), ("gzip", gzip.compress(raw)[:-12]), ("br", raw),
                            ("gzip, deflate", raw), ("gzip", b"")):
        r = _post(served, "etl", payload, **{"Content-Encoding": coding})
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", coding


def test_invalid_events_are_rejected(served: Served) -> None:
    missing_run = _post(served, "etl", {"eventTime": "2025-01-01T00:00:00Z", "producer": "x",
                                        "job": {"namespace": "airflow://a", "name": "b"}})
    not_json = _post(served, "etl", b"{")
    deep = _post(served, "etl", b"[" * 100_000 + b"]" * 100_000)
    with served.client() as c:
        anonymous = c.post("/api/v1/lineage", json={})
    assert missing_run.status_code == 400
    assert missing_run.headers["content-type"] == "application/problem+json"
    assert not_json.status_code == 400 and deep.status_code == 400
    assert anonymous.status_code == 401


def test_openlineage_client_without_credentials_fails(served: Served) -> None:
    config = HttpConfig(url=served.base_url, retry={"total": 0})
    client = OpenLineageClient(transport=HttpTransport(config))
    with pytest.raises(Exception, match="401"):
        client.emit(_event(RunState.START, str(uuid.uuid4())))
