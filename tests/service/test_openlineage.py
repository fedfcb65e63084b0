"""openlineage-python's own client posting to ``POST /api/v1/lineage`` on a real server."""

from __future__ import annotations

import datetime as dt
import uuid

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

from tests.service.conftest import Served

NS = "headwater://default"


def _client(served: Served, *, compression: HttpCompression | None = None) -> OpenLineageClient:
    config = HttpConfig(url=served.base_url, auth=ApiKeyTokenProvider({"apiKey": served.tokens["bob"]}),
                        compression=compression, retry={"total": 0})
    return OpenLineageClient(transport=HttpTransport(config))


def _event(state: RunState, run_id: str) -> RunEvent:
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(fields={
        "total": column_lineage_dataset.Fields(
            inputFields=[column_lineage_dataset.InputField(namespace=NS, name="warehouse.orders", field="amount")],
            transformationType="", transformationDescription=""),
    })
    return RunEvent(
        eventType=state,
        eventTime=dt.datetime.now(dt.UTC).isoformat(),
        run=Run(runId=run_id),
        job=Job(namespace="airflow", name="daily_totals"),
        producer="https://github.com/OpenLineage/OpenLineage/tree/1.0.0/client/python",
        inputs=[InputDataset(namespace=NS, name="warehouse.orders")],
        outputs=[OutputDataset(namespace=NS, name="lake.daily_totals", facets={"columnLineage": lineage})],
    )


@pytest.mark.parametrize("compression", [None, HttpCompression.GZIP])
def test_openlineage_client_events_reach_the_lineage_routes(served: Served, compression: HttpCompression | None) -> None:
    run_id = str(uuid.uuid4())
    client = _client(served, compression=compression)
    client.emit(_event(RunState.START, run_id))
    client.emit(_event(RunState.COMPLETE, run_id))
    with served.client() as c:
        events = c.get("/v1/lineage/events", params={"run_id": run_id}, headers=served.key("alice")).json()
        up = c.get("/v1/lineage/lake.daily_totals/upstream", headers=served.key("alice")).json()
        col = c.get("/v1/lineage/warehouse.orders.amount/downstream", headers=served.key("alice")).json()
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert (events[0]["job"]["namespace"], events[0]["job"]["name"]) == ("airflow", "daily_totals")
    assert "warehouse.orders" in up["datasets"]
    assert "lake.daily_totals.total" in col["columns"]


def test_invalid_openlineage_events_are_rejected(served: Served) -> None:
    with served.client() as c:
        missing_run = c.post("/api/v1/lineage", json={"eventTime": "2025-01-01T00:00:00Z", "producer": "x",
                                                      "job": {"namespace": "a", "name": "b"}},
                             headers=served.key("bob"))
        not_json = c.post("/api/v1/lineage", content=b"{", headers={**served.key("bob"),
                                                                     "Content-Type": "application/json"})
        anonymous = c.post("/api/v1/lineage", json={})
    assert missing_run.status_code == 400
    assert missing_run.headers["content-type"] == "application/problem+json"
    assert not_json.status_code == 400
    assert anonymous.status_code == 401


def test_openlineage_client_without_credentials_fails(served: Served) -> None:
    config = HttpConfig(url=served.base_url, retry={"total": 0})
    client = OpenLineageClient(transport=HttpTransport(config))
    with pytest.raises(Exception, match="401"):
        client.emit(_event(RunState.START, str(uuid.uuid4())))
