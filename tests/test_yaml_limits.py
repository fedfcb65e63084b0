"""Every YAML loader refuses recursive aliases, alias bombs, deep nesting and huge integers with
its own typed error naming the line; ordinary aliases still work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from headwater import ConfigError, InvalidInput, PolicyError
from headwater.config import Config
from headwater.events.routing import load_routes
from headwater.policy import load_policy
from headwater.retention._model import load_retention
from headwater.telemetry.slo._spec import load_slos


def _load_config(text: str, tmp_path: Path) -> Any:
    path = tmp_path / "headwater.yaml"
    path.write_text(text)
    return Config.load(path)


LOADERS: dict[str, tuple[Callable[..., Any], type[Exception]]] = {
    "policy": (lambda text, _: load_policy(text), PolicyError),
    "slo": (lambda text, _: load_slos(text), ConfigError),
    "retention": (lambda text, _: load_retention(text), PolicyError),
    "routing": (lambda text, _: load_routes(text), InvalidInput),
    "config": (_load_config, ConfigError),
}

BOMB = "version: 1\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10 if i else ['x'] * 10)}]\n" for i in range(7))
HOSTILE = {
    "recursive_alias": ("version: 1\nroles: &r\n  x: *r\n", 3, "recursive"),
    "self_referencing_document": ("&top\nversion: 1\nself: *top\n", 3, "recursive"),
    "alias_bomb": (BOMB, 6, "expands to more than"),
    "deep_nesting": ("version: 1\nx: " + "[" * 200 + "]" * 200 + "\n", 2, "nested deeper"),
    "huge_integer": ("version: 1\nx: " + "9" * 5000 + "\n", 2, "64 bits"),
    "integer_past_64_bits": ("version: 1\nx: 9223372036854775808\n", 2, "64 bits"),
    "invalid_date": ("version: 1\nx: 2024-02-30\n", 2, "timestamp"),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_yaml_is_a_typed_error_naming_the_line(loader: str, case: str, tmp_path: Path) -> None:
    load, error = LOADERS[loader]
    text, line, words = HOSTILE[case]
    with pytest.raises(error) as info:
        load(text, tmp_path)
    assert words in str(info.value)
    assert f"line {line}" in str(info.value) or f":{line}:" in str(info.value)


def test_ordinary_aliases_still_work() -> None:
    policy = load_policy("""\
version: 1
roles:
  reader:
    grants:
      - &read {datasets: "app.*", actions: [select]}
  auditor:
    grants:
      - *read
""")
    assert set(policy.roles) == {"reader", "auditor"}


def test_largest_64_bit_integer_is_accepted(tmp_path: Path) -> None:
    from headwater._yaml import safe_load

    assert safe_load("a: 9223372036854775807\nb: -9223372036854775808\n") == {
        "a": 2**63 - 1, "b": -(2**63)}
