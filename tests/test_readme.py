"""Every Python example in the README runs as written (in a fresh directory)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_first_block_is_the_two_commands() -> None:
    first = re.search(r"```[a-z]*\n(.*?)```", README.read_text(), flags=re.S)
    assert first is not None
    assert first.group(1).split() == ["make", "demo", "make", "test"]


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEADWATER_CONFIG", raising=False)
    namespace: dict[str, object] = {}
    exec(compile(_python_blocks()[index], f"README.md[python {index}]", "exec"), namespace)  # noqa: S102
    assert os.path.isdir(tmp_path / ".headwater")
