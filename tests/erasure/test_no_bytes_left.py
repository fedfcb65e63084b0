"""No recoverable bytes: after ``erase`` no file of the platform holds the subject's values --
databases with their WAL and journal files, DuckDB, lake files, retention archives, the metadata
database with dead letters -- while another subject's values are still there (the scan sees
them). Postgres pages are read with ``pageinspect``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import unquote

import pytest
from tests.erasure._seed import platform_files, scan_bytes, seed_pii
from typer.testing import CliRunner

from headwater import Config, Platform
from headwater.cli import app
from headwater.erasure import ErasureEngine, JobStatus, TargetKind, TargetState


def _needles(values: dict[int, dict[str, str]], i: int) -> list[str]:
    return [values[i]["email"].split("@")[0], values[i]["name"]]


COPIES = {"app.db", "warehouse.duckdb", "lake"}
"""Where a customer's email and name stay (source or its change table, warehouse, lake)."""


def _assert_scrubbed(root: Path, values: dict[int, dict[str, str]]) -> None:
    files = platform_files(root)
    gone = scan_bytes(files, _needles(values, 7))
    assert gone == {n: [] for n in _needles(values, 7)}, gone
    # the control subjects are still there, so the scan sees values where the subject was:
    # 8 is archived, in the change table and has a dead letter; 12 is a live row
    expect = {values[8]["email"].split("@")[0]: COPIES | {"metadata.db"}, values[8]["name"]: COPIES,
              values[12]["email"].split("@")[0]: COPIES, values[12]["name"]: COPIES}
    kept = scan_bytes(files, list(expect))
    for n, where in expect.items():
        hit = {Path(f).relative_to(root).parts[0] for f in kept[n]}
        assert where <= hit, (n, hit)
    assert any("archive" in f for f in kept[values[8]["name"]])


def test_embedded_erase_leaves_no_bytes_of_the_subject(tmp_path):
    root = tmp_path / "hw"
    with Platform.open(Config.embedded(root)) as p:
        values = seed_pii(p)
        files = platform_files(root)
        before = scan_bytes(files, _needles(values, 7))
        # the subject is everywhere first: change table, archive, dead letters, copies
        assert {Path(f).name.split(".")[0] for f in before[values[7]["name"]]} >= {"app", "warehouse"}
        assert any("archive" in f for f in before[values[7]["name"]])
        report = ErasureEngine(p).run("customers.id=7", actor="dpo")
        assert report.status is JobStatus.COMPLETED, [(t.dataset, t.state, t.error) for t in report.targets]
        by = {t.dataset: t for t in report.targets}
        assert by["app._hw_changes"].kind is TargetKind.CHANGE_TABLE and by["app._hw_changes"].rows >= 2
        assert by["lake.archive"].rows == 1
        assert by["headwater.dead_letters"].rows == 2  # the clear one and the sealed one
        for name in ("storage:app", "storage:warehouse", "storage:lake", "storage:headwater.metadata"):
            assert by[name].state is TargetState.VERIFIED and by[name].reason, name
        assert "VACUUM" in by["storage:app"].reason.upper() or "vacuum" in by["storage:app"].reason
        # other subjects' sealed values still open; the subject's key is gone
        keys = p.subject_keys
        assert not keys.exists("app.customers.id", 7) and keys.exists("app.customers.id", 8)
    _assert_scrubbed(root, values)


def test_cli_erase_leaves_no_bytes_of_the_subject(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEADWATER_CONFIG", raising=False)
    with Platform.open() as p:
        values = seed_pii(p)
    res = CliRunner().invoke(app, ["erase", "--subject", "customers.id=7", "--as", "dpo", "--json"],
                             env={"COLUMNS": "300"}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert '"status": "completed"' in res.stdout
    _assert_scrubbed(tmp_path / ".headwater", values)


def _pg_pages(dsn: str, relation: str) -> bytes:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        pages = conn.execute("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                             (relation,)).fetchone()[0]
        return b"".join(bytes(conn.execute("SELECT get_raw_page(%s, %s)", (relation, i)).fetchone()[0])
                        for i in range(pages))


@pytest.mark.postgres
@pytest.mark.s3
def test_postgres_pages_hold_no_bytes_of_the_subject(pg_s3):
    platform, parts = pg_s3
    values = seed_pii(platform)
    app_table = f'"{parts["schema"]}"."customers"'
    platform.session("etl").write("app.customers", [{"id": 7, "email": values[7]["email"], "name": values[7]["name"],
                                                     "country": "DE", "created_at": None}], key="id")
    platform.session("etl").write("app.customers", [{"id": 7, "email": values[7]["email"], "name": "renamed",
                                                     "country": "DE", "created_at": None}], key="id", mode="upsert")
    assert values[7]["name"].encode() in _pg_pages(parts["dsn"], app_table)  # a dead tuple holds it
    report = ErasureEngine(platform).run("customers.id=7", actor="dpo")
    assert report.status is JobStatus.COMPLETED, [(t.dataset, t.state, t.error) for t in report.targets]
    storage = next(t for t in report.targets if t.dataset == "storage:app")
    assert "VACUUM (FULL)" in storage.reason
    pages = _pg_pages(parts["dsn"], app_table)
    assert values[7]["name"].encode() not in pages and values[7]["email"].encode() not in pages
    assert values[12]["name"].encode() in pages
    meta_schema = unquote(parts["meta_url"]).split("search_path=")[-1].split("&")[0]
    dead = _pg_pages(parts["dsn"], f'"{meta_schema}"."hw_dead_letters"')
    assert values[7]["email"].encode() not in dead and values[8]["email"].encode() in dead
    # the embedded files of this platform (DuckDB warehouse) hold none of it either
    files = platform_files(Path(platform.config.platform_dir))
    assert scan_bytes(files, _needles(values, 7)) == {n: [] for n in _needles(values, 7)}
    assert scan_bytes(files, [values[12]["name"]])[values[12]["name"]]
