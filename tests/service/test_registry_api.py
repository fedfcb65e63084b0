"""The Confluent Schema Registry REST API against a real uvicorn server on loopback over
``create_app(platform)``: driven by confluent-kafka's own ``SchemaRegistryClient`` and
serializers, unmodified (those tests need ``confluent-kafka[schemaregistry,avro,json]``), and
by raw HTTP for the wire details (error bodies, media types, credentials, OpenAPI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater import Config, Platform
from headwater.service.registry_api import CONTENT_TYPE
from tests.service.conftest import Served, serve

try:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError
except ImportError as _err:  # the client needs its extra (authlib, cachetools)
    _MISSING = f"confluent-kafka[schemaregistry,avro,json] is not installed ({_err})"
else:
    _MISSING = ""

needs_client = pytest.mark.skipif(bool(_MISSING), reason=_MISSING)

ORDER_AVRO = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "total", "type": "double"}],
}
ORDER_AVRO_V2 = {  # adds an optional field: BACKWARD compatible
    **ORDER_AVRO,
    "fields": [*ORDER_AVRO["fields"], {"name": "note", "type": ["null", "string"], "default": None}],
}
ORDER_AVRO_BAD = {  # adds a field without a default: not BACKWARD compatible
    **ORDER_AVRO,
    "fields": [*ORDER_AVRO["fields"], {"name": "sku", "type": "string"}],
}
PAYMENT_JSON = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "amount": {"type": "number"}},
    "required": ["id"],
    "additionalProperties": False,
}


@dataclass
class Server:
    """A running service and the credentials of an API key."""

    platform: Platform
    url: str
    key_id: str
    secret: str

    def client(self, **conf: object) -> SchemaRegistryClient:
        """A fresh (empty-cache) Confluent client with the key as ``basic.auth.user.info``."""
        return SchemaRegistryClient(
            {"url": self.url, "basic.auth.user.info": f"{self.key_id}:{self.secret}", **conf}
        )

    def http(self, **kwargs: Any) -> httpx.Client:
        """A raw HTTP client with the same credentials (HTTP Basic)."""
        kwargs.setdefault("auth", (self.key_id, self.secret))
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``create_app`` over a fresh embedded platform (no policy: the platform is open)."""
    platform = Platform.open(Config.embedded(tmp_path / "hw"))
    key = platform.create_api_key("producer-svc")
    try:
        with serve(platform) as running:
            yield Server(platform, running.base_url, key.key_id, key.secret)
    finally:
        platform.close()


def _code(excinfo: pytest.ExceptionInfo[SchemaRegistryError]) -> tuple[int, int]:
    return excinfo.value.http_status_code, excinfo.value.error_code


@needs_client
def test_register_and_read_avro_and_json(server: Server) -> None:
    client = server.client()
    avro_id = client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO), "AVRO"))
    json_id = client.register_schema("payments-value", Schema(json.dumps(PAYMENT_JSON), "JSON"))
    assert avro_id != json_id
    # idempotent: the same schema again gets the same id and no new version
    assert server.client().register_schema("orders-value", Schema(json.dumps(ORDER_AVRO), "AVRO")) == avro_id

    reader = server.client()  # empty cache: every call below reaches the server
    got = reader.get_schema(avro_id)
    assert got.schema_type == "AVRO" and json.loads(got.schema_str) == ORDER_AVRO
    got = reader.get_schema(json_id)
    assert got.schema_type == "JSON" and json.loads(got.schema_str) == PAYMENT_JSON

    v2_id = reader.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO_V2), "AVRO"))
    latest = reader.get_latest_version("orders-value")
    assert (latest.subject, latest.version, latest.schema_id) == ("orders-value", 2, v2_id)
    assert json.loads(latest.schema.schema_str) == ORDER_AVRO_V2
    first = reader.get_version("orders-value", 1)
    assert first.schema_id == avro_id and first.schema.schema_type == "AVRO"
    assert reader.get_versions("orders-value") == [1, 2]
    assert reader.get_subjects() == ["orders-value", "payments-value"]
    assert reader.get_subjects(subject_prefix="pay") == ["payments-value"]

    found = server.client().lookup_schema("payments-value", Schema(json.dumps(PAYMENT_JSON), "JSON"))
    assert (found.subject, found.version, found.schema_id) == ("payments-value", 1, json_id)
    versions = reader.get_schema_versions(avro_id)
    assert [(v.subject, v.version) for v in versions] == [("orders-value", 1)]
    assert reader.get_subjects_by_schema_id(json_id) == ["payments-value"]
    assert sorted(reader.get_schema_types()) == ["AVRO", "JSON"]

    with server.http() as http:
        raw = http.get("/subjects/orders-value/versions/1/schema")
        assert raw.status_code == 200 and raw.json() == ORDER_AVRO
        assert raw.headers["content-type"].startswith(CONTENT_TYPE)


@needs_client
def test_registrations_are_audited_with_the_key_principal(server: Server) -> None:
    client = server.client()
    schema_id = client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO), "AVRO"))
    server.client().get_latest_version("orders-value")
    with pytest.raises(SchemaRegistryError):
        server.client().get_version("orders-value", 7)
    records = list(server.platform.audit.query(actor="producer-svc"))
    actions = [(r.action, r.decision) for r in records]
    assert ("schema_register", "allow") in actions
    assert ("schema_read", "allow") in actions
    assert ("schema_read", "deny") in actions
    register = next(r for r in records if r.action == "schema_register")
    assert register.extra["schema_id"] == schema_id


@needs_client
def test_compatibility_checks_and_rejections(server: Server) -> None:
    client = server.client()
    client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO), "AVRO"))
    assert client.test_compatibility("orders-value", Schema(json.dumps(ORDER_AVRO_V2), "AVRO")) is True
    assert client.test_compatibility("orders-value", Schema(json.dumps(ORDER_AVRO_BAD), "AVRO")) is False
    assert client.test_compatibility("orders-value", Schema(json.dumps(ORDER_AVRO_BAD), "AVRO"), version=1) is False
    assert client.test_compatibility_all_versions("orders-value", Schema(json.dumps(ORDER_AVRO_V2), "AVRO")) is True
    # a subject with no versions accepts anything (Confluent's behaviour for "latest")
    assert client.test_compatibility("fresh-value", Schema(json.dumps(ORDER_AVRO), "AVRO")) is True

    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO_BAD), "AVRO"))
    assert _code(err) == (409, 409)
    with pytest.raises(SchemaRegistryError) as err:
        client.test_compatibility("orders-value", Schema(json.dumps(ORDER_AVRO_V2), "AVRO"), version=9)
    assert _code(err) == (404, 40402)
    with pytest.raises(SchemaRegistryError) as err:
        client.test_compatibility("nope", Schema(json.dumps(ORDER_AVRO_V2), "AVRO"), version=1)
    assert _code(err) == (404, 40401)
    assert server.client().get_versions("orders-value") == [1]


@needs_client
def test_compatibility_config(server: Server) -> None:
    client = server.client()
    assert client.get_compatibility() == "BACKWARD"
    assert client.set_compatibility(level="full")["compatibility"] == "FULL"
    assert client.get_compatibility() == "FULL"
    client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO), "AVRO"))
    with pytest.raises(SchemaRegistryError) as err:
        client.get_compatibility("orders-value")  # no subject-level level: Confluent's 40408
    assert _code(err) == (404, 40408)
    assert client.set_compatibility("orders-value", "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility("orders-value") == "NONE"
    # NONE lets an otherwise incompatible schema in
    client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO_BAD), "AVRO"))
    assert str(client.delete_config("orders-value").compatibility_level) == "NONE"
    with server.http() as http:
        fallback = http.get("/config/orders-value", params={"defaultToGlobal": "true"})
        assert fallback.json() == {"compatibilityLevel": "FULL"}
    with pytest.raises(SchemaRegistryError) as err:
        client.set_compatibility("orders-value", "SIDEWAYS")
    assert _code(err) == (422, 42203)
    with pytest.raises(SchemaRegistryError) as err:
        client.delete_config("orders-value")
    assert _code(err) == (404, 40408)
    assert str(client.delete_config().compatibility_level) == "FULL"
    assert client.get_compatibility() == "BACKWARD"


@needs_client
def test_deletes_soft_then_permanent(server: Server) -> None:
    client = server.client()
    id1 = client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO), "AVRO"))
    client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO_V2), "AVRO"))

    with pytest.raises(SchemaRegistryError) as err:
        client.delete_version("orders-value", 1, permanent=True)
    assert _code(err) == (404, 40407)
    assert client.delete_version("orders-value", 1) == 1
    assert server.client().get_versions("orders-value") == [2]
    assert server.client().get_versions("orders-value", deleted=True) == [1, 2]
    with pytest.raises(SchemaRegistryError) as err:
        server.client().get_version("orders-value", 1)
    assert _code(err) == (404, 40402)
    assert server.client().get_version("orders-value", 1, deleted=True).schema_id == id1
    with pytest.raises(SchemaRegistryError) as err:
        client.delete_version("orders-value", 1)
    assert _code(err) == (404, 40406)
    assert client.delete_version("orders-value", 1, permanent=True) == 1

    with pytest.raises(SchemaRegistryError) as err:
        client.delete_subject("orders-value", permanent=True)
    assert _code(err) == (404, 40405)
    assert client.delete_subject("orders-value") == [2]
    assert server.client().get_subjects() == []
    assert server.client().get_subjects(deleted=True) == ["orders-value"]
    with pytest.raises(SchemaRegistryError) as err:
        server.client().get_versions("orders-value")
    assert _code(err) == (404, 40401)
    with pytest.raises(SchemaRegistryError) as err:
        client.delete_subject("orders-value")
    assert _code(err) == (404, 40404)
    assert client.delete_subject("orders-value", permanent=True) == [2]
    assert server.client().get_subjects(deleted=True) == []
    # the schema itself keeps its id
    assert json.loads(server.client().get_schema(id1).schema_str) == ORDER_AVRO


@needs_client
def test_error_codes_through_the_client(server: Server) -> None:
    client = server.client()
    client.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO), "AVRO"))
    cases = [
        (lambda: client.get_latest_version("missing-value"), (404, 40401)),
        (lambda: client.get_version("orders-value", 5), (404, 40402)),
        (lambda: client.get_schema(424242), (404, 40403)),
        (lambda: client.lookup_schema("orders-value", Schema(json.dumps(ORDER_AVRO_V2), "AVRO")), (404, 40403)),
        (lambda: client.lookup_schema("missing-value", Schema(json.dumps(ORDER_AVRO), "AVRO")), (404, 40401)),
        (lambda: client.register_schema("x-value", Schema('{"type": "record"', "AVRO")), (422, 42201)),
        (lambda: client.register_schema("x-value", Schema('{"type": "nonsense"}', "AVRO")), (422, 42201)),
        (lambda: client.register_schema("x-value", Schema('{"type": 5}', "JSON")), (422, 42201)),
        (lambda: client.register_schema("x-value", Schema("syntax = 'proto3';", "PROTOBUF")), (422, 42201)),
    ]
    for call, expected in cases:
        with pytest.raises(SchemaRegistryError) as err:
            call()
        assert _code(err) == expected, err.value
        assert err.value.error_message and "Traceback" not in err.value.error_message


def test_wire_format_over_raw_http(server: Server) -> None:
    """What the client relies on, checked without it: media types, bodies, error codes."""
    vnd = {"content-type": CONTENT_TYPE, "accept": f"{CONTENT_TYPE}, application/json"}
    with server.http() as http:
        created = http.post("/subjects/orders-value/versions", headers=vnd,
                            content=json.dumps({"schema": json.dumps(ORDER_AVRO)}))
        assert created.status_code == 200 and set(created.json()) == {"id"}
        assert created.headers["content-type"].startswith(CONTENT_TYPE)
        schema_id = created.json()["id"]
        # plain application/json is accepted as well as the registry media type
        again = http.post("/subjects/orders-value/versions",
                          json={"schema": json.dumps(ORDER_AVRO), "schemaType": "AVRO"})
        assert again.json() == {"id": schema_id}
        version = http.get("/subjects/orders-value/versions/latest").json()
        assert version["subject"] == "orders-value" and version["version"] == 1
        assert version["id"] == schema_id and json.loads(version["schema"]) == ORDER_AVRO
        assert http.get(f"/schemas/ids/{schema_id}").json()["schemaType"] == "AVRO"
        raw = http.get("/subjects/orders-value/versions/1/schema")
        assert raw.status_code == 200 and raw.json() == ORDER_AVRO
        assert http.get("/subjects").json() == ["orders-value"]
        assert http.get("/subjects/orders-value/versions").json() == [1]

        verbose = http.post("/compatibility/subjects/orders-value/versions/latest?verbose=true",
                            json={"schema": json.dumps(ORDER_AVRO_BAD), "schemaType": "AVRO"}).json()
        assert verbose["is_compatible"] is False and any("sku" in m for m in verbose["messages"])
        terse = http.post("/compatibility/subjects/orders-value/versions/latest",
                          json={"schema": json.dumps(ORDER_AVRO_V2)}).json()  # AVRO by default
        assert terse == {"is_compatible": True}
        conflict = http.post("/subjects/orders-value/versions", json={"schema": json.dumps(ORDER_AVRO_BAD)})
        assert conflict.status_code == 409 and conflict.json()["error_code"] == 409

        expected = [
            ("GET", "/subjects/orders-value/versions/abc", None, 422, 42202),
            ("GET", "/subjects/orders-value/versions/0", None, 422, 42202),
            ("GET", "/subjects/nope/versions", None, 404, 40401),
            ("GET", "/subjects/orders-value/versions/3", None, 404, 40402),
            ("GET", "/schemas/ids/999", None, 404, 40403),
            ("GET", "/config/orders-value", None, 404, 40408),
            ("PUT", "/config", {"compatibility": "SIDEWAYS"}, 422, 42203),
            ("POST", "/subjects/orders-value/versions", {"schema": ""}, 422, 42201),
            ("POST", "/subjects/orders-value/versions", {"schema": "{", "schemaType": "JSON"}, 422, 42201),
            ("POST", "/subjects/orders-value/versions", {"schemaType": "AVRO"}, 422, 42201),
        ]
        for method, path, body, status, code in expected:
            resp = http.request(method, path, json=body)
            assert (resp.status_code, resp.json().get("error_code")) == (status, code), (path, resp.text)
            assert set(resp.json()) == {"error_code", "message"}
            assert resp.headers["content-type"].startswith(CONTENT_TYPE)
        # a body that is not JSON at all: still a Confluent body, not problem details
        bad = http.post("/subjects/orders-value/versions", content=b"{not json", headers=vnd)
        assert bad.status_code == 422 and set(bad.json()) == {"error_code", "message"}
        # routing errors on registry paths too: an unknown sub-path, a wrong method
        assert http.get("/subjects/orders-value/versions/1/referencedby").json()["error_code"] == 404
        wrong = http.patch("/config")
        assert (wrong.status_code, wrong.json()["error_code"]) == (405, 405)
        # the rest of the service keeps RFC 9457 problem details
        for other in (http.get("/catalog/datasets/app.nope"), http.get("/no-such-route")):
            assert other.status_code == 404 and "error_code" not in other.json()


def test_wrong_or_missing_credentials_are_401(server: Server) -> None:
    with server.http(auth=(server.key_id, "wrong-secret")) as http:
        resp = http.get("/subjects")
        assert resp.status_code == 401 and resp.json() == {"error_code": 401, "message": "Unauthorized"}
        assert resp.headers["www-authenticate"].startswith("Basic")
    with server.http(auth=None) as http:
        resp = http.post("/subjects/orders-value/versions", json={"schema": json.dumps(ORDER_AVRO)})
        assert resp.status_code == 401 and resp.json()["error_code"] == 401
    with server.http() as http:
        assert http.get("/subjects").json() == []  # nothing was registered


@needs_client
def test_confluent_client_with_wrong_credentials(server: Server) -> None:
    bad = SchemaRegistryClient({"url": server.url, "basic.auth.user.info": f"{server.key_id}:wrong-secret"})
    with pytest.raises(SchemaRegistryError) as err:
        bad.get_subjects()
    assert _code(err) == (401, 401)
    assert "wrong-secret" not in err.value.error_message
    anonymous = SchemaRegistryClient({"url": server.url})
    with pytest.raises(SchemaRegistryError) as err:
        anonymous.register_schema("orders-value", Schema(json.dumps(ORDER_AVRO), "AVRO"))
    assert _code(err) == (401, 401)


def test_changes_need_an_admin_once_a_policy_is_applied(served: Served) -> None:
    """Under the demo policy: bob (analyst) reads, registers and checks; only alice (admin)
    deletes and changes compatibility levels."""
    bob = httpx.Client(base_url=served.base_url, auth=(served.key_ids["bob"], served.secrets["bob"]))
    alice = httpx.Client(base_url=served.base_url, auth=(served.key_ids["alice"], served.secrets["alice"]))
    with bob, alice:
        body = {"schema": json.dumps(PAYMENT_JSON), "schemaType": "JSON"}
        assert bob.post("/subjects/authz-value/versions", json=body).status_code == 200
        assert bob.get("/subjects/authz-value/versions/latest").status_code == 200
        assert bob.post("/compatibility/subjects/authz-value/versions/latest", json=body).json() == {
            "is_compatible": True}
        for method, path, payload in [
            ("DELETE", "/subjects/authz-value", None),
            ("DELETE", "/subjects/authz-value/versions/1", None),
            ("PUT", "/config", {"compatibility": "NONE"}),
            ("PUT", "/config/authz-value", {"compatibility": "NONE"}),
            ("DELETE", "/config", None),
        ]:
            resp = bob.request(method, path, json=payload)
            assert (resp.status_code, resp.json()["error_code"]) == (403, 40301), path
        assert bob.get("/subjects/authz-value/versions").json() == [1]
        assert alice.put("/config/authz-value", json={"compatibility": "NONE"}).json() == {"compatibility": "NONE"}
        assert alice.delete("/subjects/authz-value").json() == [1]
    denied = served.platform.audit.query(actor="bob", action="schema_delete")
    assert denied and all(r.decision == "deny" for r in denied)


@needs_client
def test_serializer_round_trips_through_the_registry(server: Server) -> None:
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    ctx = SerializationContext("orders", MessageField.VALUE)
    serializer = AvroSerializer(server.client(), json.dumps(ORDER_AVRO))
    payload = serializer({"id": 7, "total": 12.5}, ctx)
    assert payload[0] == 0  # Confluent wire format: magic byte, then the schema id
    schema_id = int.from_bytes(payload[1:5], "big")
    assert server.client().get_latest_version("orders-value").schema_id == schema_id
    assert AvroDeserializer(server.client())(payload, ctx) == {"id": 7, "total": 12.5}

    jctx = SerializationContext("payments", MessageField.VALUE)
    jpayload = JSONSerializer(json.dumps(PAYMENT_JSON), server.client())({"id": 1, "amount": 3.0}, jctx)
    assert JSONDeserializer(None, schema_registry_client=server.client())(jpayload, jctx) == {"id": 1, "amount": 3.0}
    assert server.client().get_subjects() == ["orders-value", "payments-value"]


def test_routes_are_in_the_openapi_document(server: Server) -> None:
    with server.http() as http:
        doc = http.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in [
        ("/subjects", "get"),
        ("/subjects/{subject}", "post"),
        ("/subjects/{subject}", "delete"),
        ("/subjects/{subject}/versions", "post"),
        ("/subjects/{subject}/versions/{version}", "get"),
        ("/subjects/{subject}/versions/{version}", "delete"),
        ("/subjects/{subject}/versions/{version}/schema", "get"),
        ("/schemas/ids/{id}", "get"),
        ("/schemas/ids/{id}/versions", "get"),
        ("/schemas/types", "get"),
        ("/compatibility/subjects/{subject}/versions/{version}", "post"),
        ("/compatibility/subjects/{subject}/versions", "post"),
        ("/config", "put"),
        ("/config/{subject}", "get"),
    ]:
        operation = paths[path][method]
        assert "200" in operation["responses"] and "404" in operation["responses"], path
    ok = paths["/subjects/{subject}/versions/{version}"]["get"]["responses"]["200"]
    assert CONTENT_TYPE in ok["content"]
    body = paths["/subjects/{subject}/versions"]["post"]["requestBody"]["content"]
    assert CONTENT_TYPE in body and "application/json" in body


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_server_error_or_schema_violation(server: Server, mode: str) -> None:
    """Every registry operation of the OpenAPI document, fuzzed: no 5xx, and every response
    (errors included) has a documented status, content type and body."""
    st = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance, response_headers_conformance]
    with server.http() as http:
        http.post("/subjects/orders-value/versions", json={"schema": json.dumps(ORDER_AVRO)})
    token = server.platform.create_api_key("fuzzer").token
    schema = st.openapi.from_url(f"{server.url}/openapi.json")
    generation = st.GenerationMode.POSITIVE if mode == "positive" else st.GenerationMode.NEGATIVE
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(("/subjects", "/schemas", "/compatibility", "/config")):
            continue
        if mode == "negative" and not operation.definition.raw.get("parameters") and \
                "requestBody" not in operation.definition.raw:
            continue  # nothing to make invalid

        @settings(max_examples=10, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy(generation_mode=generation))
        def call(case: Any) -> None:
            case.call_and_validate(base_url=server.url, headers={"X-API-Key": token}, checks=checks)

        call()
        tested += 1
    assert tested >= (20 if mode == "positive" else 17)
