"""Real services for tests, as a pytest plugin (``-p tests.fix_services``, set in pyproject).

Session-scoped fixtures start or find each service on loopback and hand out its address:

* ``pg_dsn``: the Postgres server at ``HEADWATER_TEST_PG_DSN``
  (default ``host=127.0.0.1 port=5432 dbname=test user=postgres``);
* ``s3_endpoint``: a ``moto_server`` (from this interpreter's bin dir) on a free port, with a
  bucket created;
* ``snowflake_conn_args``: fakesnow's server (``fakesnow -s``) on a free port, started from
  ``HEADWATER_FAKESNOW_BIN`` (default ``<repo>/.venv-fakesnow/bin/fakesnow``: fakesnow pins its
  own duckdb, so it lives in its own virtual environment, see the Makefile).

A missing service skips the test with a reason, and fails it when
``HEADWATER_REQUIRE_SERVICES=1`` (CI), through :func:`require_service`.

``any_store`` is parametrised over every store backend and yields a fresh, isolated store per
test (a temp file, a fresh Postgres or Snowflake schema, a fresh S3 prefix).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# The CLI's rich consoles read COLUMNS once, when headwater.cli is first imported (by whichever
# test comes first in a process): one fixed width keeps the CLI's tables, and the tests that
# read them, the same in every run order and every worker.
os.environ["COLUMNS"] = "200"
DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
S3_REGION = "us-east-1"
S3_KEY_ID = "testing"
S3_SECRET = "testing-secret"
START_TIMEOUT_S = 30.0

STORE_KINDS = ("sqlite", "duckdb", "postgres", "parquet_local", "parquet_s3", "snowflake")
"""Every backend ``any_store`` runs over, in order."""


def require_service(name: str, reason: str) -> None:
    """Skip the test because service ``name`` is missing; fail instead under
    ``HEADWATER_REQUIRE_SERVICES=1``. Never returns."""
    message = f"{name} unavailable: {reason}"
    if os.environ.get("HEADWATER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (HEADWATER_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except (urllib.error.URLError, OSError):
        return False


class _Service:
    """A subprocess serving HTTP on loopback, with its output kept in a temp log file."""

    def __init__(self, name: str, argv: list[str], url: str) -> None:
        self.name = name
        self.url = url
        self.log = tempfile.NamedTemporaryFile(prefix=f"hw-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self) -> str | None:
        """None once the service answers, else why it never did."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with code {self.proc.returncode}: {self.tail()}"
            if _answers(self.url):
                return None
            time.sleep(0.1)
        return f"did not answer on {self.url} within {START_TIMEOUT_S:.0f}s: {self.tail()}"

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self.log.name).read_text(errors="replace")[-600:].strip()
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            # fakesnow shuts down cleanly on SIGINT; moto on SIGTERM.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


# -- Postgres --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of a reachable Postgres server (``HEADWATER_TEST_PG_DSN``)."""
    dsn = os.environ.get("HEADWATER_TEST_PG_DSN", DEFAULT_PG_DSN)
    try:
        import psycopg
    except ImportError:
        require_service("postgres", "psycopg is not installed (pip install 'headwater[postgres]')")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        require_service("postgres", f"cannot connect ({type(err).__name__}); set HEADWATER_TEST_PG_DSN")
    return dsn


@contextlib.contextmanager
def pg_fresh_schema(dsn: str) -> Iterator[str]:
    """A new ``hw_test_<random>`` schema, dropped with everything in it afterwards."""
    import psycopg

    schema = f"hw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- S3 (moto) -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[dict[str, Any]]:
    """A moto S3 server on loopback with one bucket: endpoint, region, keys and bucket."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        require_service("s3", f"{binary} not found (pip install 'moto[server]')")
    try:
        import boto3
    except ImportError:
        require_service("s3", "boto3 is not installed (pip install 'headwater[s3]')")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = _Service("moto", [str(binary), "-H", "127.0.0.1", "-p", str(port)], url)
    try:
        problem = service.wait_ready()
        if problem:
            require_service("s3", f"moto_server {problem}")
        bucket = f"hw-test-{uuid.uuid4().hex[:8]}"
        client = boto3.client(
            "s3", endpoint_url=url, region_name=S3_REGION,
            aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET,
        )
        client.create_bucket(Bucket=bucket)
        yield {
            "endpoint_url": url,
            "region": S3_REGION,
            "access_key_id": S3_KEY_ID,
            "secret_access_key": S3_SECRET,
            "bucket": bucket,
        }
    finally:
        service.stop()


def s3_filesystem(endpoint: dict[str, Any]) -> Any:
    """A ``pyarrow.fs.S3FileSystem`` talking to the moto server."""
    import pyarrow.fs as pafs

    host = endpoint["endpoint_url"].split("://", 1)[1]
    return pafs.S3FileSystem(
        endpoint_override=host, scheme="http", access_key=endpoint["access_key_id"],
        secret_key=endpoint["secret_access_key"], region=endpoint["region"],
    )


# -- Snowflake (fakesnow) --------------------------------------------------------------
def fakesnow_binary() -> Path:
    """Where fakesnow's server script is (``HEADWATER_FAKESNOW_BIN`` or the repo's venv)."""
    return Path(os.environ.get("HEADWATER_FAKESNOW_BIN", REPO / ".venv-fakesnow" / "bin" / "fakesnow"))


@pytest.fixture(scope="session")
def snowflake_conn_args() -> Iterator[dict[str, Any]]:
    """Keyword arguments for ``SnowflakeStore`` pointing at a fakesnow server on loopback."""
    try:
        import snowflake.connector  # noqa: F401
    except ImportError:
        require_service("snowflake", "snowflake-connector-python is not installed "
                        "(pip install 'headwater[snowflake]')")
    binary = fakesnow_binary()
    if not binary.exists():
        require_service("snowflake", f"{binary} not found; create it with: python3 -m venv "
                        ".venv-fakesnow && .venv-fakesnow/bin/pip install 'fakesnow[server]' "
                        "'snowflake-connector-python<5' (or set HEADWATER_FAKESNOW_BIN)")
    port = free_port()
    service = _Service("fakesnow", [str(binary), "-s", "--host", "127.0.0.1", "-p", str(port)],
                       f"http://127.0.0.1:{port}/")
    try:
        problem = service.wait_ready()
        if problem:
            require_service("snowflake", f"fakesnow {problem}")
        yield {
            "account": "fakesnow",
            "user": "fake",
            "password": "fake-snow-pw",
            "database": "HEADWATER_TEST",
            "schema": "PUBLIC",
            "host": "127.0.0.1",
            "port": port,
            "protocol": "http",
        }
    finally:
        service.stop()


# -- every store -----------------------------------------------------------------------
@pytest.fixture(
    params=[
        "sqlite",
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.postgres),
        "parquet_local",
        pytest.param("parquet_s3", marks=pytest.mark.s3),
        pytest.param("snowflake", marks=pytest.mark.snowflake),
    ]
)
def any_store(request, tmp_path) -> Iterator[Any]:
    """A fresh, empty store of each kind in turn (``request.param`` names the kind)."""
    kind = request.param
    if kind == "sqlite":
        from headwater.stores.sqlite import SQLiteStore

        store = SQLiteStore("app", tmp_path / "app.db")
        yield store
        store.close()
    elif kind == "duckdb":
        from headwater.stores.duckdb import DuckDBStore

        store = DuckDBStore("warehouse", tmp_path / "warehouse.duckdb")
        yield store
        store.close()
    elif kind == "postgres":
        from headwater.stores.postgres import PostgresStore

        dsn = request.getfixturevalue("pg_dsn")
        with pg_fresh_schema(dsn) as schema:
            store = PostgresStore("app", dsn, schema=schema, max_connections=4)
            try:
                yield store
            finally:
                store.close()
    elif kind == "parquet_local":
        from headwater.stores.parquet import ParquetStore

        yield ParquetStore("lake", str(tmp_path / "lake"))
    elif kind == "parquet_s3":
        from headwater.stores.parquet import ParquetStore

        endpoint = request.getfixturevalue("s3_endpoint")
        fs = s3_filesystem(endpoint)
        root = f"{endpoint['bucket']}/t-{uuid.uuid4().hex[:12]}"
        yield ParquetStore("lake", root, filesystem=fs)
        with contextlib.suppress(OSError):
            fs.delete_dir(root)
    elif kind == "snowflake":
        from headwater.stores.snowflake import SnowflakeStore

        args = dict(request.getfixturevalue("snowflake_conn_args"))
        args["schema"] = f"HW_TEST_{uuid.uuid4().hex[:12].upper()}"
        # A short network timeout stops the connector from retrying fakesnow's HTTP 500s for
        # minutes when a statement hits something fakesnow does not support.
        store = SnowflakeStore("warehouse", network_timeout_s=60, **args)
        try:
            yield store
        finally:
            with contextlib.suppress(Exception):
                store.execute(f'DROP SCHEMA IF EXISTS "{args["schema"]}" CASCADE').read_all()
            store.close()
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.fixture
def store_kind(request) -> str:
    """The ``any_store`` parameter of the running test (``sqlite`` ... ``snowflake``)."""
    return request.node.callspec.params["any_store"]


def pg_schema_url(prefix: str) -> Iterator[str]:
    """A SQLAlchemy URL whose ``search_path`` is a fresh ``<prefix>_<random>`` schema (dropped
    afterwards), or a skip/failure by :func:`require_service` when Postgres is unreachable."""
    from urllib.parse import quote

    import sqlalchemy as sa

    url = os.environ.get("HEADWATER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = sa.create_engine(url, connect_args={"connect_timeout": 3})
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as err:  # noqa: BLE001 - any failure to connect means "no service"
        admin.dispose()
        require_service("postgres", f"Postgres unreachable at {url.split('@')[-1]} ({type(err).__name__})")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

