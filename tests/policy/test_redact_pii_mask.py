"""The ``redact_pii`` mask: only the PII inside free text is replaced, on every store."""

from __future__ import annotations

import pyarrow as pa
import pytest

from headwater import Platform
from headwater.errors import PolicyError
from headwater.policy import load_policy

NOTES = [
    {"id": 1, "note": "Call back on 415-555-0134 about the invoice", "n": 1},
    {"id": 2, "note": "Customer wrote from jane.doe@example.org, wants a refund", "n": 2},
    {"id": 3, "note": "Nothing personal here", "n": 3},
    {"id": 4, "note": None, "n": 4},
]
EXPECTED = [
    "Call back on <PHONE> about the invoice",
    "Customer wrote from <EMAIL>, wants a refund",
    "Nothing personal here",
    None,
]
POLICY = """
version: 1
roles:
  support:
    grants:
      - {datasets: "*", actions: [select]}
    columns:
      - {tag: pii.freetext, mask: redact_pii}
      - {column: n, mask: redact_pii}
  reader:
    grants:
      - {datasets: "*", actions: [select]}
principals:
  sam: {roles: [support]}
  setup: {roles: [reader]}
"""


@pytest.fixture(params=["app", "warehouse", "lake"])
def store(request, any_platform: Platform) -> tuple[Platform, str]:
    admin = any_platform.session("setup")
    admin.write(f"{request.param}.notes", pa.Table.from_pylist(NOTES), key="id")
    any_platform.catalog.set_tags(f"{request.param}.notes", "note", ["pii.freetext"])
    any_platform.policies.apply(POLICY, source="redact.yaml", applied_by="test")
    return any_platform, request.param


def test_redact_pii_replaces_only_the_spans(store):
    platform, name = store
    rows = platform.session("sam").sql(f"SELECT id, note, n FROM {name}.notes ORDER BY id").to_arrow().to_pylist()
    assert [r["note"] for r in rows] == EXPECTED
    assert [r["n"] for r in rows] == [None] * 4  # not text: a typed NULL
    raw = platform.session("setup").sql(f"SELECT note FROM {name}.notes ORDER BY id").to_arrow()
    assert raw.column("note").to_pylist() == [r["note"] for r in NOTES]  # masking never touches the data


def test_redact_pii_is_a_known_strategy():
    assert load_policy(POLICY).version
    with pytest.raises(PolicyError, match="redact_pii"):
        load_policy(POLICY.replace("mask: redact_pii}\n      - {column: n", "mask: redact_piii}\n      - {column: n"))
