"""The Snowflake backstop against fakesnow: principal reads run as the reader role, whose grant
script gives it SELECT on catalogued tables only. fakesnow does not enforce roles, so the tests
check the script and the role every read's connection was opened and set up with.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from headwater.errors import QueryError
from headwater.stores.base import ReadScope
from headwater.stores.snowflake import SnowflakeStore

pytestmark = pytest.mark.snowflake
SCOPE = ReadScope(tables={"customers": frozenset({"id", "name"})})


@pytest.fixture
def snow(snowflake_conn_args: dict[str, Any]) -> Iterator[tuple[SnowflakeStore, str]]:
    args = dict(snowflake_conn_args)
    args["schema"] = f"HW_TEST_{uuid.uuid4().hex[:12].upper()}"
    role = f"hw_reader_{uuid.uuid4().hex[:8]}"
    store = SnowflakeStore("warehouse", network_timeout_s=60, reader_role=role, warehouse="COMPUTE_WH", **args)
    try:
        store.write("customers", pa.table({"id": [1, 2], "name": ["a", "b"]}), key=["id"])
        store.write("payroll", pa.table({"id": [1], "salary": [100]}))
        yield store, role.upper()
    finally:
        with contextlib.suppress(Exception):
            store.execute(f'DROP SCHEMA IF EXISTS "{args["schema"]}" CASCADE').read_all()
        store.close()


def test_grant_script(snow) -> None:  # noqa: ANN001
    store, role = snow
    script = store.grant_statements(["CUSTOMERS"])
    db, schema = f'"{store._database}"', f'"{store._database}"."{store._schema}"'
    assert script[0] == f'CREATE ROLE IF NOT EXISTS "{role}"'
    assert f'GRANT USAGE ON DATABASE {db} TO ROLE "{role}"' in script
    assert f'GRANT USAGE ON SCHEMA {schema} TO ROLE "{role}"' in script
    assert f'GRANT USAGE ON WAREHOUSE "COMPUTE_WH" TO ROLE "{role}"' in script
    assert f'GRANT SELECT ON TABLE {schema}."CUSTOMERS" TO ROLE "{role}"' in script
    # every other table of the schema loses whatever the role held on it
    assert f'REVOKE ALL ON TABLE {schema}."PAYROLL" FROM ROLE "{role}"' in script
    assert not any(s.startswith("GRANT SELECT") and "PAYROLL" in s for s in script)
    assert script[-1] == f'GRANT ROLE "{role}" TO USER "{store.user}"'


def test_every_principal_read_uses_the_reader_role(snow, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    store, role = snow
    with caplog.at_level(logging.DEBUG, logger="snowflake.connector.cursor"):
        for _ in range(3):
            rows = store.execute("SELECT ID, NAME FROM CUSTOMERS ORDER BY ID", scope=SCOPE).read_all()
            assert rows.num_rows == 2
    assert store._reader_idle, "the read's connection went back to the reader pool"
    assert {store.role_of(c) for c in store._reader_idle} == {role}
    issued = [r.getMessage() for r in caplog.records]
    assert any(f'USE ROLE "{role}"' in m for m in issued)
    # the platform's own reads and writes keep the configured role (none here), on other connections
    store.execute("SELECT 1").read_all()
    assert store._idle and all(store.role_of(c) is None for c in store._idle)
    assert not set(map(id, store._idle)) & set(map(id, store._reader_idle))
    # explain is principal SQL too (fakesnow cannot explain; the connection is what matters)
    with contextlib.suppress(QueryError):
        store.explain("SELECT ID FROM CUSTOMERS")
    assert {store.role_of(c) for c in store._reader_idle} == {role}
