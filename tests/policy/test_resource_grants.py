"""Grants on resources other than rows: topics, lineage namespaces, and ``erase`` on datasets."""

from __future__ import annotations

import pytest

from headwater.errors import AccessDenied, PolicyError
from headwater.policy import RESOURCE_ACTIONS, PolicyEngine, load_policy

POLICY = """
version: 1
roles:
  producer:
    grants:
      - {datasets: "app.*", actions: [select, erase]}
      - {topics: "orders.*", actions: [publish, consume]}
      - {lineage: "airflow://*", actions: [write]}
  admin:
    inherits: [producer]
    grants:
      - {topics: "*", actions: [admin, register, declassify]}
principals:
  bob: {roles: [producer], attributes: {name: mallory, region: EU}}
  ann: {roles: [admin]}
"""


@pytest.fixture
def engine() -> PolicyEngine:
    return PolicyEngine(load_policy(POLICY), hmac_key=b"k" * 32)


def test_topic_grants_allow_only_their_actions_and_topics(engine: PolicyEngine) -> None:
    assert engine.authorize("bob", "topics", "orders.eu", "publish") == "roles.producer.grants[1]"
    assert engine.allowed("bob", "topics", "orders.eu", "admin") is None
    assert engine.allowed("bob", "topics", "cdc.app.customers", "consume") is None
    with pytest.raises(AccessDenied) as err:
        engine.authorize("bob", "topics", "cdc.app.customers", "consume")
    assert err.value.rule == "default-deny" and err.value.topic == "cdc.app.customers"
    assert engine.allowed("ann", "topics", "cdc.app.customers", "declassify") == "roles.admin.grants[0]"
    assert engine.allowed("ann", "topics", "orders.x", "publish") == "roles.producer.grants[1]"  # inherited


def test_lineage_and_erase_grants(engine: PolicyEngine) -> None:
    assert engine.allowed("bob", "lineage", "airflow://prod", "write")
    assert engine.allowed("bob", "lineage", "headwater", "write") is None
    assert engine.allowed("bob", "datasets", "app.customers", "erase")
    assert engine.allowed("bob", "datasets", "warehouse.orders", "erase") is None
    assert engine.allowed("nobody", "datasets", "app.customers", "select") is None


def test_a_dataset_grant_never_covers_a_topic_of_the_same_name(engine: PolicyEngine) -> None:
    assert engine.allowed("bob", "topics", "app.customers", "consume") is None


def test_principal_name_is_never_an_attribute(engine: PolicyEngine) -> None:
    _, attrs = engine.resolve("bob")
    assert attrs["name"] == "bob" and attrs["region"] == "EU"


@pytest.mark.parametrize("grant, message", [
    ('{topics: "x", actions: [select]}', "unknown action 'select' for topics"),
    ('{topics: "x"}', "a topics grant needs actions"),
    ('{topics: "x", datasets: "a.b", actions: [publish]}', "exactly one of datasets, topics or lineage"),
    ('{lineage: "", actions: [write]}', "lineage globs are non-empty strings"),
    ('{datasets: "a.b", actions: []}', "at least one action"),
])
def test_bad_resource_grants_name_the_line(grant: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy(f"version: 1\nroles:\n  r:\n    grants:\n      - {grant}\n")
    assert message in str(err.value) and err.value.line == 5


def test_every_kind_has_actions() -> None:
    assert set(RESOURCE_ACTIONS) == {"datasets", "topics", "lineage"}
    assert "erase" in RESOURCE_ACTIONS["datasets"]
