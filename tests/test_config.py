"""Configuration: defaults, YAML files, environment overrides, ``${VAR}`` references, secrets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from headwater import Config, ConfigError
from headwater.config import (
    DuckDBConfig,
    ParquetConfig,
    PostgresConfig,
    SQLiteConfig,
)

PASSWORD = "s3cr3t-Hunter2-pw"
URL_DSN = f"postgresql://app_user:{PASSWORD}@db.internal:5432/app"
KV_DSN = f"host=db.internal port=5432 dbname=app user=app_user password={PASSWORD}"


def write(tmp_path: Path, text: str, name: str = "headwater.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- defaults ------------------------------------------------------------------------------
def test_embedded_defaults():
    cfg = Config.embedded()
    assert cfg.platform_dir == ".headwater"
    assert set(cfg.stores) == {"app", "warehouse", "lake"}
    assert isinstance(cfg.stores["app"], SQLiteConfig)
    assert cfg.stores["app"].path == "app.db"
    assert isinstance(cfg.stores["warehouse"], DuckDBConfig)
    assert cfg.stores["warehouse"].path == "warehouse.duckdb"
    assert isinstance(cfg.stores["lake"], ParquetConfig)
    assert cfg.stores["lake"].root == "lake"
    assert cfg.metadata.url.get_secret_value() == "sqlite:///metadata.db"
    assert cfg.security.cursor_secret is None
    assert cfg.query.default_page_size == 1000
    assert cfg.query.max_page_size == 100_000


def test_embedded_with_platform_dir(tmp_path):
    cfg = Config.embedded(tmp_path / "hw")
    assert cfg.platform_dir == str(tmp_path / "hw")
    assert cfg.resolve("app.db") == tmp_path / "hw" / "app.db"
    assert cfg.resolve("/abs/x.db") == Path("/abs/x.db")


def test_load_without_file_gives_embedded_defaults():
    cfg = Config.load(None, env={})
    assert cfg.model_dump() == Config.embedded().model_dump()
    assert cfg.source is None


def test_load_without_file_honours_env():
    cfg = Config.load(None, env={"HEADWATER_STORES__APP__PATH": "other.db"})
    assert cfg.stores["app"].path == "other.db"
    assert cfg.stores["warehouse"].path == "warehouse.duckdb"


# -- files ---------------------------------------------------------------------------------
def test_yaml_file_with_relative_platform_dir(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    path = write(sub, """
        platform_dir: data/hw
        stores:
          app: {kind: sqlite, path: app.db}
          lake: {kind: parquet, root: lake}
        query:
          default_page_size: 50
    """)
    cfg = Config.load(path, env={})
    assert Path(cfg.platform_dir) == sub.resolve() / "data" / "hw"
    assert cfg.source == str(path.resolve())
    assert cfg.resolve("app.db") == sub.resolve() / "data" / "hw" / "app.db"
    assert set(cfg.stores) == {"app", "lake"}
    assert cfg.query.default_page_size == 50
    assert cfg.query.max_page_size == 100_000  # default kept


def test_yaml_file_absolute_platform_dir_kept(tmp_path):
    target = tmp_path / "elsewhere"
    path = write(tmp_path, f"platform_dir: {target}\n")
    assert Config.load(path, env={}).platform_dir == str(target)


def test_empty_file_gives_defaults(tmp_path):
    path = write(tmp_path, "")
    cfg = Config.load(path, env={})
    assert cfg.stores == {}
    assert Path(cfg.platform_dir) == tmp_path.resolve() / ".headwater"


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(tmp_path / "nope.yaml", env={})


def test_top_level_must_be_mapping(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        Config.load(path, env={})


def test_bad_yaml_names_line(tmp_path):
    path = write(tmp_path, """
        stores:
          app:
            kind: sqlite
            path: [app.db
        query: {}
    """)
    with pytest.raises(ConfigError) as info:
        Config.load(path, env={})
    assert "not valid YAML" in str(info.value)
    assert "line " in str(info.value)
    line = int(str(info.value).split("line ")[1].split(",")[0])
    assert 5 <= line <= 7
    assert info.value.path == str(path)


def test_bad_yaml_tab_indent_line_number(tmp_path):
    path = tmp_path / "headwater.yaml"
    path.write_text("platform_dir: x\nstores:\n\tapp: 1\n")
    with pytest.raises(ConfigError, match=r"line 3"):
        Config.load(path, env={})


# -- precedence ----------------------------------------------------------------------------
def test_env_override_of_nested_field(tmp_path):
    path = write(tmp_path, """
        stores:
          app: {kind: sqlite, path: app.db}
    """)
    cfg = Config.load(path, env={"HEADWATER_STORES__APP__PATH": "from-env.db"})
    assert cfg.stores["app"].path == "from-env.db"


def test_env_override_values_are_typed(tmp_path):
    cfg = Config.load(None, env={
        "HEADWATER_QUERY__DEFAULT_PAGE_SIZE": "25",
        "HEADWATER_QUERY__TIMEOUT_S": "1.5",
        "HEADWATER_SECURITY__CURSOR_TTL_S": "60",
    })
    assert cfg.query.default_page_size == 25
    assert cfg.query.timeout_s == 1.5
    assert cfg.security.cursor_ttl_s == 60


def test_env_override_can_add_a_store(tmp_path):
    path = write(tmp_path, "stores: {}\n")
    cfg = Config.load(path, env={
        "HEADWATER_STORES__PG__KIND": "postgres",
        "HEADWATER_STORES__PG__DSN": URL_DSN,
    })
    assert isinstance(cfg.stores["pg"], PostgresConfig)
    assert cfg.stores["pg"].dsn.get_secret_value() == URL_DSN


def test_unrelated_env_ignored(tmp_path):
    path = write(tmp_path, "stores: {app: {kind: sqlite, path: a.db}}\n")
    cfg = Config.load(path, env={
        "HEADWATER_CONFIG": str(path),
        "HEADWATER_REQUIRE_SERVICES": "1",
        "HEADWATER_NODOUBLE": "x",
        "STORES__APP__PATH": "nope.db",
    })
    assert cfg.stores["app"].path == "a.db"


def test_precedence_argument_over_env_over_file(tmp_path):
    path = write(tmp_path, """
        query:
          default_page_size: 10
          max_page_size: 500
          batch_size: 7
    """)
    env = {
        "HEADWATER_QUERY__DEFAULT_PAGE_SIZE": "20",
        "HEADWATER_QUERY__MAX_PAGE_SIZE": "600",
    }
    cfg = Config.load(path, env=env, overrides={"query": {"default_page_size": 30}})
    assert cfg.query.default_page_size == 30  # argument beats env and file
    assert cfg.query.max_page_size == 600  # env beats file
    assert cfg.query.batch_size == 7  # file beats default
    assert cfg.query.timeout_s == 300.0  # default


def test_env_override_with_unparseable_yaml_value_is_a_string(tmp_path):
    cfg = Config.load(None, env={"HEADWATER_STORES__APP__PATH": "[weird.db"})
    assert cfg.stores["app"].path == "[weird.db"


def test_env_override_bad_value_is_config_error():
    with pytest.raises(ConfigError) as info:
        Config.load(None, env={"HEADWATER_QUERY__TIMEOUT_S": "[1"})
    assert "query.timeout_s" in str(info.value)


def test_env_secret_that_looks_numeric_stays_a_string():
    cfg = Config.load(None, env={"HEADWATER_SECURITY__CURSOR_SECRET": "12345678901234567890"})
    assert cfg.security.cursor_secret.get_secret_value() == "12345678901234567890"


def test_env_override_null():
    cfg = Config.load(None, env={"HEADWATER_QUERY__TIMEOUT_S": "null"})
    assert cfg.query.timeout_s is None


# -- ${VAR} --------------------------------------------------------------------------------
def test_env_reference_expanded(tmp_path):
    path = write(tmp_path, """
        stores:
          app:
            kind: postgres
            dsn: postgresql://app_user:${PGPASS}@${PGHOST}:5432/app
    """)
    cfg = Config.load(path, env={"PGPASS": PASSWORD, "PGHOST": "db.internal"})
    assert cfg.stores["app"].dsn.get_secret_value() == URL_DSN


def test_env_reference_missing_is_config_error(tmp_path):
    path = write(tmp_path, """
        stores:
          app: {kind: postgres, dsn: "postgresql://u:${NOT_SET_ANYWHERE}@h/db"}
    """)
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        Config.load(path, env={})


# -- validation ----------------------------------------------------------------------------
def test_validation_error_names_field(tmp_path):
    path = write(tmp_path, """
        query:
          default_page_size: lots
    """)
    with pytest.raises(ConfigError) as info:
        Config.load(path, env={})
    assert "query.default_page_size" in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_field_rejected(tmp_path):
    path = write(tmp_path, "query: {page_sise: 3}\n")
    with pytest.raises(ConfigError, match=r"query\.page_sise"):
        Config.load(path, env={})


def test_unknown_store_kind_rejected(tmp_path):
    path = write(tmp_path, "stores: {app: {kind: oracle, path: x}}\n")
    with pytest.raises(ConfigError, match=r"stores\.app"):
        Config.load(path, env={})


def test_config_error_is_value_error(tmp_path):
    path = write(tmp_path, "query: {batch_size: many}\n")
    with pytest.raises(ValueError):
        Config.load(path, env={})


# -- secrets -------------------------------------------------------------------------------
@pytest.mark.parametrize("dsn", [URL_DSN, KV_DSN])
def test_secret_not_in_repr_str_or_yaml(dsn):
    cfg = Config.embedded("/tmp/hw")
    cfg.stores["app"] = PostgresConfig(dsn=dsn, schema="app")
    for text in (repr(cfg), str(cfg), cfg.to_yaml(), repr(cfg.stores["app"]), str(cfg.stores["app"])):
        assert PASSWORD not in text
    assert "**********" in cfg.to_yaml()
    # but the platform can still reach it
    assert cfg.stores["app"].dsn.get_secret_value() == dsn
    assert PASSWORD in cfg.to_yaml_with_secrets()


def test_loaded_secret_not_in_repr_or_yaml(tmp_path):
    path = write(tmp_path, f"""
        stores:
          app: {{kind: postgres, dsn: "{URL_DSN}"}}
        metadata:
          url: postgresql://meta:{PASSWORD}@db/meta
        security:
          cursor_secret: {PASSWORD}-cursor
    """)
    cfg = Config.load(path, env={})
    for text in (repr(cfg), str(cfg), cfg.to_yaml()):
        assert PASSWORD not in text


def test_secret_not_in_config_error_for_invalid_config(tmp_path):
    path = write(tmp_path, f"""
        stores:
          app:
            kind: postgres
            dsn: "{URL_DSN}"
            max_connections: lots
            bogus: 1
          other: {{kind: postgres, dsn: "{KV_DSN}", schema: [not, a, string]}}
    """)
    with pytest.raises(ConfigError) as info:
        Config.load(path, env={})
    message = str(info.value)
    assert "max_connections" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(info.value)
    assert all(PASSWORD not in str(v) for v in info.value.context.values())


def test_secret_not_in_config_error_for_env_override():
    with pytest.raises(ConfigError) as info:
        Config.load(None, env={"HEADWATER_STORES__APP__DSN": URL_DSN})
    assert PASSWORD not in str(info.value)


def test_secret_from_env_reference_not_in_error(tmp_path):
    path = write(tmp_path, """
        stores:
          app: {kind: postgres, dsn: "postgresql://u:${PGPASS}@h/db", connect_timeout_s: soon}
    """)
    with pytest.raises(ConfigError) as info:
        Config.load(path, env={"PGPASS": PASSWORD})
    assert "connect_timeout_s" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_unparseable_env_secret_not_leaked():
    weird = "[" + PASSWORD
    try:
        cfg = Config.load(None, env={"HEADWATER_SECURITY__CURSOR_SECRET": weird})
    except ConfigError as err:
        assert PASSWORD not in str(err)
    else:
        assert cfg.security.cursor_secret.get_secret_value() == weird
        assert PASSWORD not in repr(cfg)
