"""Erasure jobs survive a SIGKILL mid-way and stores that cannot be reached: resume finishes
them and never re-does a verified target."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.erasure._seed import SUBJECT, count, pg_s3_config, seed
from tests.fix_services import REPO, free_port

from headwater import Config, Platform
from headwater.erasure import PAUSE_ENV, ErasureEngine, JobStatus, TargetState
from headwater.erasure._jobs import JobStore
from headwater.metadata import MetadataStore

COPIES = {"app.customers": "id", "warehouse.dim_customer": "customer_id",
          "lake.customer_export": "customer_id", "warehouse.customers_replica": "id"}

CHILD = textwrap.dedent("""
    import sys
    from headwater import Platform
    from headwater.erasure import ErasureEngine
    platform = Platform.open(sys.argv[1])
    ErasureEngine(platform).run(sys.argv[2], actor="dpo")
    print("finished")
""")


@pytest.fixture(params=["embedded", pytest.param("pg_s3", marks=[pytest.mark.postgres, pytest.mark.s3])])
def crash_config(request, tmp_path) -> Config:
    """A seeded platform's config (embedded, or Postgres app and metadata + DuckDB + S3), closed."""
    if request.param == "embedded":
        cfg = Config.embedded(tmp_path / "hw")
        with Platform.open(cfg) as p:
            seed(p)
        return cfg
    platform, parts = request.getfixturevalue("pg_s3")
    seed(platform)
    platform.close()  # the child opens the DuckDB file
    return pg_s3_config(tmp_path, parts["dsn"], parts["schema"], parts["s3"], meta_url=parts["meta_url"])


def _target_audits(platform: Platform, job_id: str) -> list:
    return [r for r in platform.audit.query(action="erase", limit=None)
            if r.extra.get("job_id") == job_id and "target" in r.extra]


def test_sigkill_mid_job_then_resume(tmp_path, crash_config):
    path = tmp_path / "headwater.yaml"
    path.write_text(crash_config.to_yaml_with_secrets())
    env = {**os.environ, PAUSE_ENV: "60", "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), SUBJECT], env=env,  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    meta = MetadataStore.open(crash_config.metadata.url.get_secret_value(), base_dir=Path(crash_config.platform_dir))
    jobs = JobStore(meta)
    job_id = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            listed = jobs.jobs()
            if listed:
                job_id = listed[0].job_id
                if any(t.state is TargetState.VERIFIED for t in jobs.targets(job_id)):
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the child never verified a target")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    crashed = jobs.targets(job_id)
    meta.close()
    done = [t for t in crashed if t.state is TargetState.VERIFIED]
    assert len(done) == 1 and jobs is not None
    first = done[0]
    with Platform.open(crash_config) as p:
        engine = ErasureEngine(p)
        assert engine.status(job_id, actor="dpo").status is JobStatus.RUNNING  # what a crash leaves
        # the killed run changed only the first target
        assert count(p, first.dataset, f"{COPIES[first.dataset]} = 7") == 0
        others = [ds for ds in COPIES if ds != first.dataset]
        assert all(count(p, ds, f"{COPIES[ds]} = 7") == 1 for ds in others)
        report = engine.run(actor="dpo", resume=job_id)
        assert report.ok and report.runs == 2
        assert all(count(p, ds, f"{col} = 7") == 0 for ds, col in COPIES.items())
        again = next(t for t in report.targets if t.position == first.position)
        assert again.rows == first.rows == 1
        audited = [r.extra["target"] for r in _target_audits(p, job_id)]
        assert audited.count(first.position) == 1  # not re-done by the resume
        assert sorted(audited) == sorted({t.position for t in report.targets if t.verified})
        # resuming a completed job is a no-op that returns its report
        assert engine.run(actor="dpo", resume=job_id).runs == 2


@pytest.mark.postgres
@pytest.mark.s3
def test_unreachable_stores_make_the_job_partial_then_resume(tmp_path, pg_s3):
    platform, parts = pg_s3
    seed(platform)
    platform.close()
    dead = f"http://127.0.0.1:{free_port()}"
    bad = pg_s3_config(tmp_path, parts["dsn"], parts["schema"], parts["s3"], s3_endpoint=dead,
                       pg_dsn=f"host=127.0.0.1 port={free_port()} dbname=test user=postgres",
                       meta_url=parts["meta_url"])
    with Platform.open(bad) as p:
        report = ErasureEngine(p).run(SUBJECT, actor="dpo")
    assert report.status is JobStatus.PARTIAL and not report.ok
    states = {t.dataset: t for t in report.targets}
    for ds in ("app.customers", "lake.customer_export"):
        assert states[ds].state is TargetState.FAILED and not states[ds].verified and states[ds].error, ds
        assert "=7" not in states[ds].error
    for ds in ("warehouse.dim_customer", "warehouse.customers_replica", "headwater.dead_letters"):
        assert states[ds].state is TargetState.VERIFIED, ds
    assert report.path.exists() and '"status": "partial"' in report.path.read_text()
    good = pg_s3_config(tmp_path, parts["dsn"], parts["schema"], parts["s3"], meta_url=parts["meta_url"])
    with Platform.open(good) as p:
        assert count(p, "app.customers", "id = 7") == 1  # the failed target was not touched
        resumed = ErasureEngine(p).run(actor="dpo", resume=report.job_id)
        assert resumed.ok and resumed.runs == 2
        assert all(count(p, ds, f"{col} = 7") == 0 for ds, col in COPIES.items())
        audited = [r.datasets[0] for r in _target_audits(p, report.job_id)]
        # the unreachable ones were audited failed, then verified; the others once, never re-done
        # (a storage step runs again only for a store the resume changed)
        assert {ds: audited.count(ds) for ds in set(audited)} == {
            "app.customers": 2, "lake.customer_export": 2, "warehouse.dim_customer": 1,
            "warehouse.customers_replica": 1, "headwater.dead_letters": 1, "lake.archive": 2,
            "headwater.subject_keys": 1, "storage:app": 2, "storage:lake": 2, "storage:warehouse": 1,
            "storage:headwater.metadata": 1}
