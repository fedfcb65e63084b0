"""The registry's compatibility checker against Apicurio's compatibility test data.

Each case is checked twice, BACKWARD and FORWARD, with the default (strict) open-content
policy; see ``shared/conformance/README.md`` for the expected-value semantics.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from headwater.events.registry.compat import CompatibilityMode, check_compatibility


def _conformance_dir() -> Path:
    env = os.environ.get("HEADWATER_CONFORMANCE_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "conformance"


def _cases(filename: str) -> list[dict]:
    path = _conformance_dir() / "schema-registry" / filename
    if not path.exists():
        if os.environ.get("HEADWATER_REQUIRE_SERVICES") == "1":
            raise FileNotFoundError(path)
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{path} not found"))]
    cases = json.loads(path.read_text())["tests"]
    return [pytest.param(c, id=c["id"]) for c in cases if c.get("enabled", True)]


def _outcome(case: dict, schema_type: str) -> str:
    backward = check_compatibility(
        case["updated"],
        [case["original"]],
        schema_type=schema_type,
        mode=CompatibilityMode.BACKWARD,
    )
    forward = check_compatibility(
        case["updated"],
        [case["original"]],
        schema_type=schema_type,
        mode=CompatibilityMode.FORWARD,
    )
    if backward.compatible and forward.compatible:
        return "both"
    if backward.compatible:
        return "backward"
    if forward.compatible:
        return "forward"
    return "none"


JSON_CASES = _cases("jsonschema-compatibility.json")
AVRO_CASES = _cases("avro-compatibility.json")


def test_case_counts() -> None:
    if len(JSON_CASES) == 1 and JSON_CASES[0].marks:
        pytest.skip("conformance data not found")
    assert len(JSON_CASES) == 145
    assert len(AVRO_CASES) == 4


@pytest.mark.parametrize("case", JSON_CASES)
def test_jsonschema_compatibility(case: dict) -> None:
    assert _outcome(case, "JSON") == case["compatibility"]


@pytest.mark.parametrize("case", AVRO_CASES)
def test_avro_compatibility(case: dict) -> None:
    assert _outcome(case, "AVRO") == case["compatibility"]
