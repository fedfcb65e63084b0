"""The ``headwater`` command line (Typer + rich)."""

from headwater.cli import cdc as _cdc  # noqa: F401 - registers commands
from headwater.cli import events as _events  # noqa: F401 - registers commands
from headwater.cli import pii as _pii  # noqa: F401 - registers commands
from headwater.cli import slo as _slo  # noqa: F401 - registers commands
from headwater.cli.app import app, main

__all__ = ["app", "main"]
