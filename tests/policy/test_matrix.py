"""The policy matrix: roles x datasets x actions, for queries and for writes."""

from __future__ import annotations

import pyarrow as pa
import pytest

from headwater.errors import AccessDenied, InvalidInput
from headwater.principal import Principal
from tests.policy.conftest import CUSTOMERS_DS, DATASETS, ORDERS_DS, SECRET_DS, World

ALLOWED = {
    # principal: {(dataset, action)} it may do (ignoring row filters and column rules)
    "alice": {(d, a) for d in DATASETS for a in ("select", "insert", "update", "delete")},
    "bob": {("app.customers", "select"), ("app.orders", "select")},
    "carol": {("app.customers", "select"), ("app.orders", "select"),
              ("app.customers", "insert"), ("app.customers", "update")},
    "mallory": set(),  # not in the policy: default deny
}
SELECTS = {"app.customers": "SELECT id FROM app.customers", "app.orders": "SELECT id FROM app.orders",
           "hr.salaries": "SELECT id FROM hr.salaries"}


@pytest.mark.parametrize("who", sorted(ALLOWED))
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_select_matrix(world: World, who: str, dataset: str) -> None:
    if (dataset, "select") in ALLOWED[who]:
        world.run(SELECTS[dataset], who)
    else:
        with pytest.raises(AccessDenied) as info:
            world.run(SELECTS[dataset], who)
        assert info.value.rule == "default-deny"


@pytest.mark.parametrize("who", sorted(ALLOWED))
@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("action", ["insert", "update", "delete"])
def test_write_grant_matrix(world: World, who: str, dataset: str, action: str) -> None:
    ds = DATASETS[dataset]
    cols = ["id"]
    if (dataset, action) in ALLOWED[who]:
        world.engine.authorize_write(ds, who, action, cols, None)
    else:
        with pytest.raises(AccessDenied):
            world.engine.authorize_write(ds, who, action, cols, None)


def test_writes_need_unmasked_read_of_every_column(world: World) -> None:
    eng = world.engine
    eng.authorize_write(CUSTOMERS_DS, "carol", "insert", ["id", "email", "country"], None)
    with pytest.raises(AccessDenied) as info:
        eng.authorize_write(CUSTOMERS_DS, "carol", "insert", ["id", "phone"], None)
    assert info.value.rule == "roles.analyst.columns[2]"
    with pytest.raises(AccessDenied):
        eng.authorize_write(CUSTOMERS_DS, "carol", "update", ["ssn"], None)


def _rows(countries: list[str | None]) -> pa.Table:
    return pa.table({"id": list(range(100, 100 + len(countries))), "email": ["x@y.z"] * len(countries),
                     "country": countries})


def test_writes_must_stay_inside_the_row_filter(world: World) -> None:
    eng = world.engine
    eng.authorize_write(CUSTOMERS_DS, "carol", "insert", ["id", "email", "country"], _rows(["DE", "FR"]))
    with pytest.raises(AccessDenied) as info:
        eng.authorize_write(CUSTOMERS_DS, "carol", "insert", ["id", "email", "country"], _rows(["DE", "US", "GB"]))
    assert info.value.rule == "roles.support_eu.row_filters[0]"
    assert info.value.rows == 2
    assert "US" not in str(info.value) and "GB" not in str(info.value)
    with pytest.raises(AccessDenied):  # NULL is outside the filter
        eng.authorize_write(CUSTOMERS_DS, "carol", "insert", ["id", "email", "country"], _rows([None]))
    with pytest.raises(AccessDenied):  # a missing filter column counts as NULL
        eng.authorize_write(CUSTOMERS_DS, "carol", "insert", ["id"], pa.table({"id": [1]}))
    # alice has no filter
    eng.authorize_write(CUSTOMERS_DS, "alice", "insert", ["id", "country"], _rows(["US"]))


def test_write_actions_are_checked(world: World) -> None:
    with pytest.raises(InvalidInput):
        world.engine.authorize_write(ORDERS_DS, "alice", "select", ["id"], None)


def test_row_filter_for_update_and_delete_statements(world: World) -> None:
    pred, params = world.engine.row_filter(CUSTOMERS_DS, "carol", "select", alias="t", first_param=3)
    assert pred is not None
    assert pred.sql("duckdb") == "((t.country IN (__hwparam3__, __hwparam4__, __hwparam5__, __hwparam6__, " \
        "__hwparam7__, __hwparam8__, __hwparam9__)))"
    assert params == ["DE", "FR", "IT", "ES", "NL", "IE", "PL"]
    assert world.engine.row_filter(CUSTOMERS_DS, "alice") == (None, [])
    with pytest.raises(AccessDenied):
        world.engine.row_filter(SECRET_DS, "bob")


def test_token_roles_override_file_roles(world: World) -> None:
    # A principal that arrives with roles (e.g. from a JWT) uses them, not the file's.
    p = Principal("bob", roles=("admin",))
    assert world.run("SELECT ssn FROM app.customers WHERE id = 1", p) == [("123-45-6789",)]
    # Unknown roles grant nothing.
    with pytest.raises(AccessDenied):
        world.run("SELECT id FROM app.customers", Principal("bob", roles=("superuser",)))


def test_limits_take_the_most_generous_role_that_sets_them() -> None:
    from tests.policy.conftest import POLICY

    w = World(POLICY.replace("  support_eu:\n", "  support_eu:\n    max_rows: 50000\n    max_concurrent: 2\n"))
    d = w.decide("SELECT id FROM app.customers", Principal("x", roles=("analyst", "support_eu"),
                                                             attributes={"countries": ["DE"]}))
    assert d.max_rows == 50000 and d.timeout_s == 30 and d.max_concurrent == 2
    assert w.decide("SELECT id FROM app.customers", "alice").max_rows is None
