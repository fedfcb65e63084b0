"""Lineage that cannot be forged or read around the policy (issue 14), through the SDK, with
the metadata store on SQLite and on Postgres.

One regression test per attack: posting without the ``lineage.write`` grant, posting in the
platform's namespace, a forged ``IDENTITY`` edge reaching erasure's API, re-posting a job
without column lineage erasing edges, reads naming datasets the reader may not see, and SQL
facets keeping literals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from headwater import Config, Platform
from headwater.config import MetadataConfig
from headwater.errors import AccessDenied, InvalidInput
from headwater.lineage import WITHHELD
from tests.lineage._gov import DERIVE, SSN, event, forged_identity, seed

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def platform(request, tmp_path) -> Iterator[Platform]:
    """The embedded platform with the seed data and policy; its metadata on SQLite or Postgres."""
    cfg = Config.embedded(tmp_path / "hw")
    if request.param == "postgres":
        schema = request.getfixturevalue("pg_schema")[1]
        cfg.metadata = MetadataConfig(url=SecretStr(f"{DEFAULT_PG_URL}?options=-csearch_path%3D{schema}"))
    p = Platform.open(cfg)
    try:
        seed(p)
        yield p
    finally:
        p.close()


@pytest.fixture
def open_platform(tmp_path) -> Iterator[Platform]:
    """The same data with no policy applied (the platform is open)."""
    p = Platform.open(Config.embedded(tmp_path / "open"))
    try:
        seed(p, policy=False)
        yield p
    finally:
        p.close()


def _denials(platform: Platform, actor: str, attempted: str) -> list:
    return [r for r in platform.audit.query(actor=actor) if r.decision == "deny"
            and (r.extra or {}).get("attempted") == attempted]


def _copies(platform: Platform, *, trusted_only: bool = True) -> set[str]:
    return {e.target for e in platform.lineage.copies_of("app.customers", "id", trusted_only=trusted_only)}


# -- lineage.write --------------------------------------------------------------------------
def test_posting_lineage_needs_the_write_grant(platform: Platform) -> None:
    forged = forged_identity()
    for who in ("mallory", "bob"):
        with pytest.raises(AccessDenied, match="may not write lineage namespace airflow://prod"):
            platform.session(who).lineage.post(forged)
        assert _denials(platform, who, "lineage_write"), f"{who}'s denial is audited"
    assert platform.lineage.events(run_id=forged["run"]["runId"]) == []
    # etl may write in airflow://*, nowhere else
    with pytest.raises(AccessDenied):
        platform.session("etl").lineage.post(forged_identity("dbt://prod"))
    stored = platform.session("etl").lineage.post(forged)
    assert stored["job"]["namespace"] == "airflow://prod"
    records = [r for r in platform.audit.query(actor="etl") if r.action == "lineage_write"]
    assert records and records[-1].extra["namespace"] == "airflow://prod"


@pytest.mark.parametrize("namespace", ["headwater://default", "HEADWATER://default", "headwater",
                                       "headwater://other"])
def test_outside_producers_cannot_post_in_the_platform_namespace(platform: Platform, namespace: str) -> None:
    # alice holds lineage.write on "*": the platform's own namespace is still not hers
    job = "alice.create.warehouse.copy"
    before = platform.lineage.upstream("warehouse.copy.id")
    with pytest.raises(AccessDenied, match="reserved"):
        platform.session("alice").lineage.post(
            event(namespace, job, inputs=["app.accounts"], outputs=[("warehouse.copy", {})]))
    assert _denials(platform, "alice", "lineage_write")
    assert platform.lineage.upstream("warehouse.copy.id") == before
    assert "app.customers.id" in before.columns
    with pytest.raises(AccessDenied, match="reserved"):
        platform.lineage.ingest(event(namespace, job, outputs=[("warehouse.copy", {})]), producer="alice")


# -- trusted lineage for erasure --------------------------------------------------------------
def test_a_forged_identity_edge_is_never_trusted(platform: Platform) -> None:
    assert _copies(platform) == {"warehouse.copy.id"}
    platform.session("etl").lineage.post(forged_identity())
    # erasure's API: only what the platform recorded
    assert _copies(platform) == {"warehouse.copy.id"}
    direct = {e.target for e in platform.lineage.downstream("app.customers.id", depth=1).edges if e.type == "DIRECT"}
    assert direct == {"warehouse.copy.id"}
    # the forged edge is recorded, with its provenance, for readers who want the whole picture
    everything = platform.lineage.copies_of("app.customers", "id", trusted_only=False)
    forged = next(e for e in everything if e.target == "app.accounts.id")
    assert (forged.trusted, forged.producer, forged.job) == (False, "etl", "airflow://prod/forge")
    shown = platform.session("alice").lineage.downstream("app.customers.id", depth=1)
    assert {(e.target, e.trusted) for e in shown.edges if e.type == "DIRECT"} == {
        ("warehouse.copy.id", True), ("app.accounts.id", False)}


def test_reposting_a_job_replaces_only_that_producers_edges(platform: Platform) -> None:
    etl, alice = platform.session("etl").lineage, platform.session("alice").lineage
    job = ("airflow://prod", "nightly")
    etl.post(event(*job, inputs=["app.customers"], outputs=[("warehouse.copy", {"email": [("app.customers", "email")]})]))
    alice.post(event(*job, inputs=["app.accounts"], outputs=[("warehouse.copy", {"email": [("app.accounts", "note")]})]))

    def sources() -> set[tuple[str, str]]:
        g = platform.lineage.upstream("warehouse.copy.email", depth=1, trusted_only=False)
        return {(e.source, e.producer) for e in g.edges if e.type == "DIRECT"}

    both = {("app.customers.email", ""), ("app.customers.email", "etl"), ("app.accounts.note", "alice")}
    assert sources() == both
    # the same job again without a columnLineage facet, without inputs: nothing is erased
    etl.post(event(*job, outputs=[("warehouse.copy", None)]))
    alice.post(event(*job, inputs=["app.accounts"], outputs=[("warehouse.copy", None)]))
    assert sources() == both
    assert "app.customers" in platform.lineage.upstream("warehouse.copy", trusted_only=False).datasets
    # with new column lineage: only etl's own edges of that job are replaced
    etl.post(event(*job, inputs=["app.accounts"], outputs=[("warehouse.copy", {"email": [("app.accounts", "id")]})]))
    assert sources() == {("app.customers.email", ""), ("app.accounts.id", "etl"), ("app.accounts.note", "alice")}
    # and the platform's own edges never moved
    trusted = platform.lineage.upstream("warehouse.copy.email", depth=1).edges
    assert {e.source for e in trusted if e.type == "DIRECT"} == {"app.customers.email"}


# -- reads filtered by dataset grants ---------------------------------------------------------
def test_reads_show_only_datasets_the_reader_may_see(platform: Platform) -> None:
    platform.session("etl").lineage.post(forged_identity())
    bob = platform.session("bob").lineage
    graph = bob.upstream("warehouse.copy")
    doc = json.dumps(graph.to_dict())
    assert graph.datasets == [] and graph.columns == [] and graph.hidden == 1
    assert "app." not in doc and "customers" not in doc and "ssn" not in doc and "email" not in doc.replace(
        "warehouse.copy.email", "")
    placeholder = next(n for n in graph.nodes if n.hidden)
    assert placeholder.dataset == "<hidden dataset 1>" and placeholder.field is None
    assert {e.source for e in graph.edges} == {"<hidden dataset 1>"}
    assert all(e.job == "" for e in graph.edges)  # the job's name could name the hidden dataset
    # a column root: same
    col = bob.upstream("warehouse.copy.id")
    assert col.columns == [] and col.hidden == 1 and "customers" not in json.dumps(col.to_dict())
    # a root the reader may not see: denied and audited
    for who, node in (("bob", "app.customers.id"), ("bob", "app.customers"), ("mallory", "warehouse.copy")):
        with pytest.raises(AccessDenied):
            platform.session(who).lineage.downstream(node)
        assert _denials(platform, who, "lineage_read")
    # alice sees everything, names included
    full = platform.session("alice").lineage.downstream("app.customers")
    assert full.hidden == 0 and set(full.datasets) == {"warehouse.copy", "app.accounts"}


def test_events_naming_hidden_datasets_are_not_returned(platform: Platform) -> None:
    platform.session("etl").lineage.post(event("airflow://prod", "mixed", inputs=["warehouse.copy"],
                                               outputs=[("warehouse.summary", None)],
                                               sql="INSERT INTO warehouse.summary SELECT * FROM app.customers"))
    platform.session("etl").lineage.post(event("airflow://prod", "plain", inputs=["warehouse.copy"],
                                               outputs=[("warehouse.summary", None)],
                                               sql="INSERT INTO warehouse.summary SELECT * FROM warehouse.copy"))
    bob = platform.session("bob").lineage.events()
    assert bob and "app.customers" not in json.dumps(bob)
    assert {e["job"]["name"] for e in bob} == {"mixed", "plain"}
    mixed = next(e for e in bob if e["job"]["name"] == "mixed")
    assert mixed["job"]["facets"]["sql"]["query"] == WITHHELD
    alice = platform.session("alice").lineage.events()
    assert any(e["job"]["name"] == "alice.create.warehouse.copy" for e in alice)
    assert len(platform.session("alice").lineage.events(limit=1)) == 1


# -- SQL without literals ---------------------------------------------------------------------
def test_sql_facets_keep_no_literals(platform: Platform) -> None:
    mine = platform.lineage.events(job_name="alice.create.warehouse.copy")
    assert mine and SSN not in json.dumps(mine)
    assert "ssn = ?" in mine[0]["job"]["facets"]["sql"]["query"]
    assert mine[0]["job"]["facets"]["sql"]["query"].startswith("CREATE TABLE warehouse.copy AS SELECT id, email")
    posted = platform.session("etl").lineage.post(event(
        "airflow://prod", "leaky", inputs=["warehouse.copy"], outputs=[("warehouse.leak", None)],
        sql="/* for 987-65-4321 */ INSERT INTO warehouse.leak SELECT * FROM warehouse.copy "
            "WHERE email = 'victim@example.com' AND id = 42 AND note = $$secret note$$"))
    stored = platform.lineage.events(job_name="leaky")
    for text in (json.dumps(posted), json.dumps(stored), json.dumps(platform.session("bob").lineage.events())):
        for secret in ("987-65-4321", "victim@example.com", "42", "secret note"):
            assert secret not in text
    assert "email = %s" in stored[0]["job"]["facets"]["sql"]["query"]  # postgres placeholders


def test_a_failed_run_keeps_no_values_in_its_error(platform: Platform) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any failure of the run
        with platform.lineage.track(DERIVE, schema={}, job_name="fails"):
            raise RuntimeError(f"duplicate key (ssn)=({SSN}) for 'victim@example.com'")
    fail = platform.lineage.events(job_name="fails")[-1]
    assert fail["eventType"] == "FAIL"
    assert SSN not in json.dumps(fail) and "victim@example.com" not in json.dumps(fail)


# -- no policy: open, but never trusted -------------------------------------------------------
def test_without_a_policy_posts_are_open_but_untrusted(open_platform: Platform) -> None:
    open_platform.session("anyone").lineage.post(forged_identity())
    assert _copies(open_platform) == {"warehouse.copy.id"}
    assert _copies(open_platform, trusted_only=False) == {"warehouse.copy.id", "app.accounts.id"}
    with pytest.raises(AccessDenied, match="reserved"):
        open_platform.session("anyone").lineage.post(forged_identity("headwater://default"))
    assert open_platform.session("anyone").lineage.upstream("warehouse.copy").hidden == 0


def test_bad_events_are_refused_with_typed_errors(platform: Platform) -> None:
    etl = platform.session("etl").lineage
    with pytest.raises(InvalidInput):
        etl.post({"job": {"name": "x"}})
    with pytest.raises(InvalidInput, match="longer than"):
        etl.post(event("airflow://prod", "x" * 600, outputs=[("warehouse.copy", None)]))
    deep: dict = {}
    node = deep
    for _ in range(200):
        node["x"] = {}
        node = node["x"]
    ev = event("airflow://prod", "deep", outputs=[("warehouse.copy", None)])
    ev["run"]["facets"] = {"custom": {"_producer": "x:y", "_schemaURL": "x:y", "deep": deep}}
    with pytest.raises(InvalidInput, match="nested"):
        etl.post(ev)
    bad_cl = event("airflow://prod", "badcl", outputs=[("warehouse.copy", None)])
    bad_cl["outputs"][0]["facets"] = {"columnLineage": {"_producer": "x:y", "_schemaURL": "x:y",
                                                        "fields": {"a": {"inputFields": [{"name": 1}]}}}}
    with pytest.raises(InvalidInput):
        etl.post(bad_cl)
    assert platform.lineage.events(job_name="badcl") == []
