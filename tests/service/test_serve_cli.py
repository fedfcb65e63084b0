"""``headwater serve`` as a subprocess: it serves the configured platform on the given port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from headwater import Config, Platform
from tests.fix_services import free_port

HEADWATER = [sys.executable, "-c", "from headwater.cli.app import main; main()"]


def test_headwater_serve_runs_uvicorn_on_the_platform_with_metrics(tmp_path: Path) -> None:
    config = tmp_path / "headwater.yaml"
    doc = yaml.safe_load(Config.embedded(tmp_path / "hw").to_yaml_with_secrets())
    config.write_text(yaml.safe_dump(doc))
    with Platform.open(config) as platform:
        platform.session("setup").write("app.things", [{"id": 1, "name": "one"}])
        token = platform.create_api_key("setup").token
    # only the server process exports metrics (the SDK, once installed, stays for the process)
    doc["telemetry"] = {"exporters": ["prometheus"]}
    config.write_text(yaml.safe_dump(doc))
    port = free_port()
    env = {**os.environ, "HEADWATER_CONFIG": str(config)}
    proc = subprocess.Popen(  # noqa: S603
        [*HEADWATER, "serve", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "headwater serve did not come up"
            time.sleep(0.1)
        rows = httpx.post(f"{base}/v1/query", json={"sql": "SELECT name FROM app.things"},
                          headers={"X-API-Key": token}).json()["rows"]
        assert rows == [["one"]]
        assert httpx.get(f"{base}/readyz").json()["status"] == "ok"
        metrics = httpx.get(f"{base}/metrics").text  # the telemetry module's metrics, when enabled
        assert "db_client_operation_duration" in metrics and 'db_system_name="sqlite"' in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_rejects_bad_limits_without_a_traceback(tmp_path: Path) -> None:
    out = subprocess.run(  # noqa: S603
        [*HEADWATER, "serve", "--rate", "0"], capture_output=True, text=True,
        env={**os.environ, "HEADWATER_CONFIG": ""}, cwd=tmp_path, timeout=60)
    assert out.returncode == 1
    assert "InvalidInput" in out.stderr and "Traceback" not in out.stderr
