"""The ``headwater`` command line (Typer + rich)."""

from headwater.cli.app import app, main

__all__ = ["app", "main"]
