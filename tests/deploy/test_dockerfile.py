"""The container image's Dockerfile: hadolint-clean, multi-stage, non-root, health-checked.

Docker cannot build here (no engine), so the image is checked as text: hadolint's rules plus
the properties the Kubernetes manifests rely on (uid, port, entrypoint, config path). The CI
workflows build and smoke-test the image where an engine exists.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from headwater.config import Config
from tests.deploy.conftest import DEPLOY, ROOT, run

DOCKERFILES = [DEPLOY / "Dockerfile", ROOT / ".buildkite" / "ci.Dockerfile"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        op, _, rest = full.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by FROM."""
    groups: list[list[tuple[str, str]]] = []
    for op, rest in instructions(path):
        if op == "FROM":
            groups.append([])
        if groups:
            groups[-1].append((op, rest))
    return groups


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_finds_nothing(hadolint: str, dockerfile: Path) -> None:
    result = run([hadolint, "--format", "json", str(dockerfile)])
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_reports_a_bad_dockerfile(hadolint: str, tmp_path: Path) -> None:
    # The lint must be able to fail: an unpinned base image, root user, apt without cleanup.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n")
    result = run([hadolint, "--format", "json", str(bad)])
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert result.returncode != 0
    assert {"DL3007", "DL3025"} <= codes, codes


def test_multi_stage_with_extras_build_argument() -> None:
    groups = stages(DEPLOY / "Dockerfile")
    assert len(groups) >= 2
    builder, runtime = groups[0], groups[-1]
    assert builder[0][1].endswith("AS builder")
    assert ("ARG", next(a for o, a in builder if o == "ARG" and a.startswith("EXTRAS="))) in builder
    install = " ".join(a for o, a in builder if o == "RUN")
    assert "[${EXTRAS}]" in install and "pip wheel" in install
    # The runtime stage takes only the built environment from the builder, no compilers.
    copies = [a for o, a in runtime if o == "COPY"]
    assert any(c.startswith("--from=builder /opt/headwater") for c in copies)
    assert not any(o == "RUN" and "pip install" in a for o, a in runtime)


def test_runtime_runs_as_an_unprivileged_numeric_user() -> None:
    runtime = stages(DEPLOY / "Dockerfile")[-1]
    users = [a for o, a in runtime if o == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it; matches the manifests' runAsUser.
    assert uid.isdigit() and int(uid) >= 1000 and (not gid or gid.isdigit())
    assert uid == "10001"


def test_health_check_port_and_entrypoint() -> None:
    runtime = stages(DEPLOY / "Dockerfile")[-1]
    ops = dict(runtime)
    assert "/healthz" in ops["HEALTHCHECK"] and "127.0.0.1:8000" in ops["HEALTHCHECK"]
    assert ops["EXPOSE"].split() == ["8000"]
    assert json.loads(ops["ENTRYPOINT"]) == ["headwater", "serve"]
    cmd = json.loads(ops["CMD"])
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "8000"


def test_entrypoint_arguments_parse_with_the_cli() -> None:
    # The image runs `headwater serve --host 0.0.0.0 --port 8000`: the CLI must accept it.
    import typer

    from headwater.cli import app

    runtime = dict(stages(DEPLOY / "Dockerfile")[-1])
    argv = json.loads(runtime["ENTRYPOINT"])[1:] + json.loads(runtime["CMD"])
    root = typer.main.get_command(app)
    command = root.commands[argv[0]]  # type: ignore[attr-defined]
    ctx = command.make_context(argv[0], argv[1:])
    assert ctx.params["host"] == "0.0.0.0" and ctx.params["port"] == 8000


def test_default_config_is_the_embedded_platform_in_the_data_directory() -> None:
    runtime = stages(DEPLOY / "Dockerfile")[-1]
    env = " ".join(a for o, a in runtime if o == "ENV")
    config_path = re.search(r"HEADWATER_CONFIG=(\S+)", env).group(1)  # type: ignore[union-attr]
    copied = [shlex.split(a) for o, a in runtime if o == "COPY" and not a.startswith("--from")]
    source = next(src for src, dest in copied if dest == config_path)
    cfg = Config.load(ROOT / source, env={})
    workdir = [a for o, a in runtime if o == "WORKDIR"][-1]
    # An absolute platform dir, the one writable directory the image prepares for its user.
    assert cfg.platform_dir == workdir == "/var/lib/headwater"
    assert set(cfg.stores) == {"app", "warehouse", "lake"}


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "the context is an allow-list: everything is ignored first"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for dockerfile in [DEPLOY / "Dockerfile"]:
        for op, args in instructions(dockerfile):
            if op != "COPY" or args.startswith("--from"):
                continue
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert any(src == a or src.startswith(a + "/") for a in allowed), src
                assert (ROOT / src).exists(), src
