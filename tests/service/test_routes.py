"""Every /v1 route over a real server: happy paths, governance, paging, Arrow, problem details."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from headwater.demo import DEMO_POLICY
from headwater.events.envelope import Event
from headwater.policy import load_policy
from tests.service.conftest import CUSTOMERS, Served

ARROW = "application/vnd.apache.arrow.stream"


def test_health_ready_metrics_need_no_credentials(served: Served) -> None:
    with served.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ok"
        assert set(ready.json()["checks"]) == {"metadata", "store:app", "store:warehouse", "store:lake"}
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "# TYPE" in metrics.text


def test_query_is_governed_masked_columns(served: Served) -> None:
    sql = {"sql": "SELECT id, email, phone FROM app.customers WHERE id = 1"}
    with served.client() as c:
        alice = c.post("/v1/query", json=sql, headers=served.key("alice")).json()
        bob_response = c.post("/v1/query", json=sql, headers=served.key("bob"))
        bob, bob_headers = bob_response.json(), bob_response.headers
    assert alice["columns"] == ["id", "email", "phone"]
    assert bob_headers["cache-control"] == "no-store"
    assert alice["rows"] == [[1, "user1@example.com", "+1 555 0101"]]
    assert bob["rows"][0][0] == 1
    assert bob["rows"][0][1] != "user1@example.com" and "example.com" in bob["rows"][0][1]
    assert bob["rows"][0][2].endswith("0101") and bob["rows"][0][2] != "+1 555 0101"


def test_query_row_filters_and_denied_column(served: Served) -> None:
    with served.client() as c:
        carol = c.post("/v1/query", json={"sql": "SELECT id, country FROM app.customers ORDER BY id"},
                       headers=served.key("carol")).json()
        denied = c.post("/v1/query", json={"sql": "SELECT ssn FROM app.customers"}, headers=served.key("bob"))
    eu = {"DE", "FR", "IT", "ES", "NL", "IE", "PL"}
    assert carol["rows"] == [[r["id"], r["country"]] for r in CUSTOMERS if r["country"] in eu]
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["code"] == "AccessDenied"


def test_keyset_pages_over_http_match_the_sdk(served: Served) -> None:
    sql = "SELECT order_id, amount FROM warehouse.orders WHERE amount > ? ORDER BY amount DESC, order_id"
    sdk = served.platform.session("alice").sql(sql, [10], page_size=40)
    expected = [row for page in sdk for row in page.to_arrow().to_pylist()]
    got: list[dict] = []
    body = {"sql": sql, "params": [10], "page_size": 40}
    pages = 0
    with served.client() as c:
        while True:
            page = c.post("/v1/query", json=body, headers=served.key("alice")).json()
            got.extend(dict(zip(page["columns"], row, strict=True)) for row in page["rows"])
            pages += 1
            if not page["next_cursor"]:
                break
            body = {"sql": sql, "params": [10], "page_size": 40, "cursor": page["next_cursor"]}
    assert got == expected
    assert pages == -(-len(expected) // 40)
    assert len(expected) > 200


def test_cursor_of_another_principal_is_refused(served: Served) -> None:
    body = {"sql": "SELECT order_id FROM warehouse.orders ORDER BY order_id", "page_size": 5}
    with served.client() as c:
        first = c.post("/v1/query", json=body, headers=served.key("alice")).json()
        stolen = c.post("/v1/query", json={**body, "cursor": first["next_cursor"]}, headers=served.key("bob"))
    assert stolen.status_code == 400
    assert stolen.json()["code"] == "InvalidCursor"


def test_arrow_stream_is_readable_by_pyarrow(served: Served) -> None:
    with served.client() as c, c.stream("POST", "/v1/query", json={"sql": "SELECT * FROM warehouse.orders"},
                                        headers={**served.key("alice"), "Accept": ARROW}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == ARROW
        data = b"".join(r.iter_bytes())
    table = pa.ipc.open_stream(data).read_all()
    assert table.num_rows == 300
    assert table.column_names == ["order_id", "customer_id", "amount"]
    assert sorted(table.column("order_id").to_pylist()) == list(range(1, 301))


def test_arrow_stream_is_governed(served: Served) -> None:
    with served.client() as c:
        r = c.post("/v1/query", json={"sql": "SELECT id, email FROM app.customers ORDER BY id", "page_size": 3},
                   headers={**served.key("bob"), "Accept": ARROW})
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert "user1@example.com" not in table.column("email").to_pylist()
    assert r.headers["X-Next-Cursor"]


def test_read_dataset_pages_and_columns(served: Served) -> None:
    with served.client() as c:
        first = c.get("/v1/datasets/warehouse.orders/rows", params={"page_size": 100, "columns": "order_id,amount",
                                                                    "order_by": "order_id"},
                      headers=served.key("alice")).json()
        second = c.get("/v1/datasets/warehouse.orders/rows", params={"cursor": first["next_cursor"],
                                                                     "columns": "order_id,amount",
                                                                     "order_by": "order_id"},
                       headers=served.key("alice")).json()
        carol = c.get("/v1/datasets/app.customers/rows", headers=served.key("carol")).json()
        missing = c.get("/v1/datasets/app.nope/rows", headers=served.key("alice"))
    assert first["columns"] == ["order_id", "amount"]
    assert [r[0] for r in first["rows"]] == list(range(1, 101))
    assert [r[0] for r in second["rows"]] == list(range(101, 201))
    assert {r[carol["columns"].index("country")] for r in carol["rows"]} <= {"DE", "FR", "IT"}
    assert missing.status_code == 404 and missing.json()["code"] == "DatasetNotFound"


@pytest.mark.parametrize("who", ["alice", "bob", "carol"])
@pytest.mark.parametrize("columns", [None, "email", "id,email"])
def test_read_defaults_fit_each_principal(served: Served, who: str, columns: str | None) -> None:
    params = {"page_size": 5} | ({"columns": columns} if columns else {})
    with served.client() as c:
        page = c.get("/v1/datasets/app.customers/rows", params=params, headers=served.key(who))
        if who == "bob" and columns == "email":  # the key is not selected, so the sort is on a masked column
            assert page.status_code == 403 and page.json()["rule"] == "settings.masked_predicates"
            return
        assert page.status_code == 200, page.text
        body = page.json()
        rows = list(body["rows"])
        while body["next_cursor"]:
            body = c.get("/v1/datasets/app.customers/rows", headers=served.key(who),
                         params={"cursor": body["next_cursor"]} | ({"columns": columns} if columns else {})).json()
            rows.extend(body["rows"])
    expected_cols = columns.split(",") if columns else (
        ["id", "email", "phone", "name", "country"] if who == "bob" else ["id", "email", "phone", "ssn", "name", "country"])
    assert body["columns"] == expected_cols
    assert len(rows) == (15 if who == "carol" else 25)


def test_write_json_and_arrow_then_read_back(served: Served) -> None:
    with served.client() as c:
        created = c.post("/v1/datasets/lake.events/rows", json=[{"id": 1, "kind": "a"}, {"id": 2, "kind": "b"}],
                         headers=served.key("alice"))
        table = pa.table({"id": [2, 3], "kind": ["B", "c"]})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        c.post("/v1/datasets/app.kinds/rows", json=[{"id": 1, "kind": "a"}, {"id": 2, "kind": "b"}],
               headers=served.key("alice"))
        upserted = c.post("/v1/datasets/app.kinds/rows", params={"mode": "upsert", "key": "id"},
                          content=sink.getvalue().to_pybytes(), headers={**served.key("alice"), "Content-Type": ARROW})
        kinds = c.post("/v1/query", json={"sql": "SELECT id, kind FROM app.kinds ORDER BY id"},
                       headers=served.key("alice")).json()["rows"]
        replaced = c.post("/v1/datasets/app.kinds/rows", params={"mode": "overwrite"}, json=[{"id": 9, "kind": "z"}],
                          headers=served.key("alice")).json()
        after = c.post("/v1/query", json={"sql": "SELECT id, kind FROM app.kinds"},
                       headers=served.key("alice")).json()["rows"]
        wrapped = c.post("/v1/datasets/lake.events/rows", json={"rows": [{"id": 3, "kind": "c"}]},
                         headers=served.key("alice"))
        back = c.post("/v1/query", json={"sql": "SELECT id, kind FROM lake.events ORDER BY id"},
                      headers=served.key("alice")).json()
        denied = c.post("/v1/datasets/app.customers/rows", json=[{"id": 99}], headers=served.key("bob"))
        bad = c.post("/v1/datasets/lake.events/rows", content=b"not json", headers=served.key("alice"))
    assert created.status_code == 200, created.text
    assert created.json() == {"dataset": "lake.events", "mode": "append", "rows_written": 2, "created": True}
    assert upserted.json()["mode"] == "upsert" and upserted.json()["rows_written"] == 2
    assert kinds == [[1, "a"], [2, "B"], [3, "c"]]
    assert replaced["mode"] == "overwrite" and after == [[9, "z"]]
    assert wrapped.json()["rows_written"] == 1
    assert back["rows"] == [[1, "a"], [2, "b"], [3, "c"]]
    assert denied.status_code == 403
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidInput"


def test_catalog_list_and_show(served: Served) -> None:
    with served.client() as c:
        listing = c.get("/v1/catalog", params={"pattern": "app.*"}, headers=served.key("alice")).json()
        shown = c.get("/v1/catalog/app.customers", headers=served.key("alice")).json()
    assert "app.customers" in [d["name"] for d in listing]
    tags = {c["name"]: c["tags"] for c in shown["columns"]}
    assert tags["email"] == ["pii.email"] and tags["ssn"] == ["pii.ssn"]
    assert shown["store"] == "app" and shown["kind"] == "sqlite"


def test_catalog_is_governed(served: Served) -> None:
    with served.client() as c:
        bob = c.get("/v1/catalog/app.customers", headers=served.key("bob")).json()
        carol = c.get("/v1/catalog", headers=served.key("carol")).json()
        dave = c.get("/v1/catalog", headers=served.key("dave")).json()
        dave_show = c.get("/v1/catalog/app.customers", headers=served.key("dave"))
        carol_orders = c.get("/v1/catalog/warehouse.orders", headers=served.key("carol"))
    assert "ssn" not in [col["name"] for col in bob["columns"]]          # denied to analysts
    assert "email" in [col["name"] for col in bob["columns"]]            # masked, still visible
    assert [d["name"] for d in carol] == ["app.customers"]               # support_eu grants only
    assert dave == []
    assert dave_show.status_code == 404 and carol_orders.status_code == 404
    assert dave_show.json()["detail"] == "unknown dataset 'app.customers'"


def test_policies_show_validate_diff_apply(served: Served) -> None:
    admin = served.key("alice")
    with served.client() as c:
        current = c.get("/v1/policies/current", headers=admin).json()
        assert current["document"] == served.platform.policies.latest().document
        valid = c.post("/v1/policies/validate", json={"document": current["document"]}, headers=admin).json()
        assert valid["valid"] and valid["roles"] == len(load_policy(DEMO_POLICY).roles)
        invalid = c.post("/v1/policies/validate", json={"document": "version: 1\nroles: [oops\n"}, headers=admin)
        assert invalid.status_code == 422 and invalid.json()["code"] == "PolicyError"
        changed = current["document"].replace("  bob: {roles: [analyst]}", "  bob: {roles: [analyst, support_eu]}")
        diff = c.post("/v1/policies/diff", json={"document": changed}, headers=admin).json()
        assert diff["current_version"] == current["version"] and diff["changes"]
        same = c.post("/v1/policies", json={"document": current["document"], "source": "http"}, headers=admin).json()
        demo = load_policy(DEMO_POLICY)
        n_roles, n_principals = len(demo.roles), len(demo.principals)
        assert same == {"version": current["version"], "changed": False, "roles": n_roles, "principals": n_principals}
        history = c.get("/v1/policies/history", headers=admin).json()
        assert [h["version"] for h in history][-1] == current["version"]

        zoe = {"X-API-Key": served.platform.create_api_key("zoe").token}
        sql = {"sql": "SELECT email FROM app.customers WHERE id = 1"}
        assert c.post("/v1/query", json=sql, headers=zoe).status_code == 403      # not in the policy
        with_zoe = current["document"].replace("  bob: {roles: [analyst]}", "  bob: {roles: [analyst]}\n  zoe: {roles: [analyst]}")
        applied = c.post("/v1/policies", json={"document": with_zoe, "source": "http"}, headers=admin).json()
        assert applied["changed"] and applied["version"] == current["version"] + 1 and applied["principals"] == n_principals + 1
        assert c.post("/v1/query", json=sql, headers=zoe).json()["rows"] == [["***@example.com"]]  # in force at once
        restored = c.post("/v1/policies", json={"document": current["document"]}, headers=admin).json()
        assert restored["changed"] and restored["principals"] == n_principals
        assert served.platform.audit.query(actor="alice", action="policy_change", newest_first=True, limit=1)


def test_events_publish_and_dead_letters(served: Served) -> None:
    schema = json.dumps({"type": "object", "properties": {"order_id": {"type": "integer"}},
                         "required": ["order_id"]})
    served.platform.register_schema("shipments-value", schema, actor="alice")
    served.platform.bus.create_topic("shipments")
    with served.client() as c:
        ok = c.post("/v1/events/shipments", json={"type": "com.example.shipped", "data": {"order_id": 7},
                                                  "key": "7"}, headers=served.key("bob"))
        bad = c.post("/v1/events/shipments", json={"type": "com.example.shipped", "data": {"order_id": "x"}},
                     headers=served.key("bob"))
    assert ok.status_code == 201, ok.text
    assert ok.json()["topic"] == "shipments" and ok.json()["schemaid"] is not None
    assert bad.status_code == 422 and bad.json()["code"] == "EventValidationError"
    published = served.platform.audit.query(actor="bob", action="publish", newest_first=True, limit=1)
    assert published and published[0].extra["event_id"] == ok.json()["id"]

    event = Event(type="com.example.shipped", source="/test", data={"order_id": 8})
    dl = served.platform.dead_letters.add(event.to_json(), stage="handle", error=("ValueError", "boom"), attempts=3,
                                          consumer_group="g", topic="shipments", partition=0, offset=1, event=event)
    with served.client() as c:
        listed = c.get("/v1/dead-letters", params={"topic": "shipments"}, headers=served.key("alice")).json()
        shown = c.get(f"/v1/dead-letters/{dl.id}", headers=served.key("alice")).json()
        dry = c.post("/v1/dead-letters/replay", json={"ids": [dl.id], "dry_run": True},
                     headers=served.key("alice")).json()
        replay = c.post("/v1/dead-letters/replay", json={"ids": [dl.id]}, headers=served.key("alice")).json()
        gone = c.get("/v1/dead-letters/999999", headers=served.key("alice"))
    assert dl.id in [d["id"] for d in listed]
    assert shown["error_class"] == "ValueError" and json.loads(shown["value"])["data"] == {"order_id": 8}
    assert dry["dry_run"] and dry["outcomes"][0]["action"] == "would replay"
    assert replay["replayed"] == 1
    assert served.platform.dead_letters.get(dl.id).status == "replayed"
    assert gone.status_code == 404 and gone.json()["code"] == "DeadLetterNotFound"


def test_audit_list_and_verify(served: Served) -> None:
    with served.client() as c:
        c.post("/v1/query", json={"sql": "SELECT id FROM app.customers WHERE id = 2"}, headers=served.key("carol"))
        records = c.get("/v1/audit", params={"actor": "carol", "action": "query", "newest_first": True},
                        headers=served.key("alice")).json()
        verify = c.get("/v1/audit/verify", headers=served.key("alice")).json()
    assert records and records[0]["actor"] == "carol" and records[0]["datasets"] == ["app.customers"]
    assert verify["ok"] is True and verify["records_checked"] > 0


def test_lineage_of_a_derived_dataset(served: Served) -> None:
    session = served.platform.session("alice")
    session.sql("CREATE TABLE warehouse.big_orders AS SELECT order_id, amount FROM warehouse.orders WHERE amount > 100")
    with served.client() as c:
        up = c.get("/v1/lineage/warehouse.big_orders/upstream", headers=served.key("bob")).json()
        down = c.get("/v1/lineage/warehouse.orders.amount/downstream", headers=served.key("bob")).json()
    assert up["direction"] == "upstream" and "warehouse.orders" in up["datasets"]
    assert "warehouse.big_orders.amount" in down["columns"]


def test_slo_status(served: Served) -> None:
    with served.client() as c:
        slos = c.get("/v1/slo", headers=served.key("bob")).json()
    assert {s["slo"] for s in slos} == {"query-success", "query-latency"}
    assert all(s["state"] in {"ok", "ticket", "page"} for s in slos)


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("POST", "/v1/query", {"sql": "SELECT * FROM app.nope"}, 404, "DatasetNotFound"),
    ("POST", "/v1/query", {"sql": "SELECT FROM WHERE ("}, 400, "QueryParseError"),
    ("POST", "/v1/query", {"sql": "SELECT 1", "page_size": 0}, 422, "RequestValidationError"),
    ("POST", "/v1/query", {"sql": "SELECT id FROM app.customers", "cursor": "forged.cursor"}, 400, "InvalidCursor"),
    ("GET", "/v1/catalog/app.nope", None, 404, "DatasetNotFound"),
    ("GET", "/v1/nowhere", None, 404, "NotFound"),
    ("DELETE", "/v1/query", None, 405, "MethodNotAllowed"),
])
def test_errors_are_problem_details_without_internals(served: Served, method: str, path: str, body: dict | None,
                                                      status: int, code: str) -> None:
    with served.client() as c:
        r = c.request(method, path, json=body, headers=served.key("alice"))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert {"type", "title", "status", "detail", "instance", "code"} <= set(problem)
    assert problem["status"] == status and problem["code"] == code and problem["instance"] == path
    text = r.text
    assert "Traceback" not in text and 'File "' not in text and "site-packages" not in text
    assert served.secrets["alice"] not in text and served.tokens["alice"] not in text


def test_unexpected_errors_are_bare_500_problems_and_logs_keep_secrets(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from headwater import Config, Platform
    from headwater.service import create_app

    with Platform.open(Config.embedded(tmp_path / "hw")) as platform:
        app = create_app(platform)

        @app.get("/v1/boom")
        def boom() -> None:
            raise RuntimeError("connect failed: postgresql://user:hunter2@db/prod")

        with caplog.at_level("INFO"), TestClient(app) as c:
            r = c.get("/v1/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {"type": "https://headwater.dev/problems/internal-error", "title": "Internal Server Error",
                        "status": 500, "detail": "the server failed to handle this request",
                        "instance": "/v1/boom", "code": "InternalError"}
    assert "hunter2" not in caplog.text and "RuntimeError" in caplog.text


def test_openapi_document_is_complete(served: Served) -> None:
    with served.client() as c:
        doc = c.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"ApiKey", "Bearer", "Basic"} <= set(doc["components"]["securitySchemes"])
    assert "Problem" in doc["components"]["schemas"]
    ops = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
           if path.startswith(("/v1/", "/api/v1/", "/healthz", "/readyz", "/metrics"))]
    assert len(ops) >= 22
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))
    for path, method, op in ops:
        where = f"{method.upper()} {path}"
        assert op.get("tags") and op.get("summary") and op.get("description"), where
        ok = op["responses"].get("200") or op["responses"].get("201")
        assert ok and ok.get("content"), where
        assert "default" in op["responses"] or path in {"/healthz", "/readyz", "/metrics"}, where
        if path.startswith(("/v1/", "/api/")):
            assert op["security"] == [{"ApiKey": []}, {"Bearer": []}, {"Basic": []}], where


def test_keyset_pages_are_governed_per_principal_whoever_paged_first(served: Served) -> None:
    body = {"sql": "SELECT id, email FROM app.customers WHERE id < 20 ORDER BY id", "page_size": 4}
    with served.client() as c:
        alice = c.post("/v1/query", json=body, headers=served.key("alice")).json()
        bob = c.post("/v1/query", json=body, headers=served.key("bob")).json()
        carol = c.post("/v1/query", json=body, headers=served.key("carol")).json()
        alice_again = c.post("/v1/query", json=body, headers=served.key("alice")).json()
    assert alice["rows"][0] == [1, "user1@example.com"] and alice_again == {**alice, "next_cursor": alice_again["next_cursor"]}
    assert [r[0] for r in bob["rows"]] == [1, 2, 3, 4]
    assert all(r[1].startswith("***@") for r in bob["rows"])
    assert [r[0] for r in carol["rows"]] == [r["id"] for r in CUSTOMERS if r["country"] in {"DE", "FR", "IT"}][:4]


def test_a_failed_write_writes_nothing(served: Served) -> None:
    count = {"sql": "SELECT count(*) AS n FROM warehouse.orders"}
    rows = [{"order_id": 1000 + i, "customer_id": 1, "amount": 1.0} for i in range(5)]
    rows.append({"order_id": "not a number", "customer_id": 1, "amount": 1.0})
    with served.client() as c:
        before = c.post("/v1/query", json=count, headers=served.key("alice")).json()["rows"]
        r = c.post("/v1/datasets/warehouse.orders/rows", json=rows, headers=served.key("alice"))
        after = c.post("/v1/query", json=count, headers=served.key("alice")).json()["rows"]
    assert 400 <= r.status_code < 500 and r.headers["content-type"] == "application/problem+json"
    assert before == after
