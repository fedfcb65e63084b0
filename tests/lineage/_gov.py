"""Shared setup of the lineage governance tests: a platform (metadata on SQLite or Postgres)
with customers, a derived dataset recorded by the platform itself, and a policy in force.

Principals: ``alice`` (admin: every dataset, lineage writes in every namespace), ``etl`` (posts
lineage in ``airflow://*``, reads ``warehouse.*``), ``bob`` (reads ``warehouse.*`` only),
``mallory`` (named in no policy: nothing).
"""

from __future__ import annotations

import uuid
from typing import Any

from headwater import Platform
from headwater.lineage import FACET_SCHEMA_URLS, RUN_EVENT_SCHEMA_URL

POLICY = """\
version: 1
roles:
  admin:
    grants:
      - {datasets: "*", actions: [select, insert, update, delete, erase]}
      - {lineage: "*", actions: [write]}
  airflow:
    grants:
      - {lineage: "airflow://*", actions: [write]}
      - {datasets: "warehouse.*", actions: [select]}
  analyst:
    grants:
      - {datasets: "warehouse.*", actions: [select]}
principals:
  alice: {roles: [admin]}
  etl: {roles: [airflow], kind: service}
  bob: {roles: [analyst]}
"""
SSN = "123-45-6789"
DERIVE = f"CREATE TABLE warehouse.copy AS SELECT id, email FROM app.customers WHERE ssn = '{SSN}' OR id > 1"
FOREIGN = "https://github.com/OpenLineage/OpenLineage/tree/1.30.0/integration/airflow"


def seed(platform: Platform, *, policy: bool = True) -> None:
    """Customers and accounts in ``app``, ``warehouse.copy`` derived from customers by the
    platform (trusted lineage), then the policy."""
    setup = platform.session("setup")
    setup.write("app.customers", [{"id": i, "email": f"u{i}@example.com", "ssn": f"123-45-{6780 + i}"}
                                  for i in range(1, 6)], key="id")
    setup.write("app.accounts", [{"id": i, "note": f"account {i}"} for i in range(1, 6)], key="id")
    platform.session("alice").sql(DERIVE)
    if policy:
        platform.apply_policy(POLICY, source="test", applied_by="test")


def event(job_ns: str, job: str, *, outputs: list[tuple[str, dict[str, list[tuple[str, str]]] | None]],
          inputs: list[str] = (), event_type: str = "COMPLETE", sql: str | None = None,
          run_id: str | None = None, ns: str = "headwater://default") -> dict[str, Any]:
    """An OpenLineage RunEvent from an outside producer.

    ``outputs`` are (dataset, column lineage) with column lineage ``{field: [(dataset, field)]}``
    as DIRECT/IDENTITY edges (None: no ``columnLineage`` facet at all).
    """
    outs = []
    for name, fields in outputs:
        out: dict[str, Any] = {"namespace": ns, "name": name}
        if fields is not None:
            out["facets"] = {"columnLineage": {
                "_producer": FOREIGN, "_schemaURL": FACET_SCHEMA_URLS["columnLineage"],
                "fields": {f: {"inputFields": [
                    {"namespace": ns, "name": d, "field": c,
                     "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]} for d, c in srcs]}
                    for f, srcs in fields.items()}}}
        outs.append(out)
    ev: dict[str, Any] = {
        "eventType": event_type, "eventTime": "2026-01-01T00:00:00Z", "producer": FOREIGN,
        "schemaURL": RUN_EVENT_SCHEMA_URL, "run": {"runId": run_id or str(uuid.uuid4())},
        "job": {"namespace": job_ns, "name": job},
        "inputs": [{"namespace": ns, "name": i} for i in inputs],
        "outputs": outs,
    }
    if sql is not None:
        ev["job"]["facets"] = {"sql": {"_producer": FOREIGN, "_schemaURL": FACET_SCHEMA_URLS["sql"],
                                       "query": sql, "dialect": "postgres"}}
    return ev


def forged_identity(job_ns: str = "airflow://prod", job: str = "forge") -> dict[str, Any]:
    """The attack: an IDENTITY edge from the customers' key into another dataset's key."""
    return event(job_ns, job, inputs=["app.customers"],
                 outputs=[("app.accounts", {"id": [("app.customers", "id")]})])
