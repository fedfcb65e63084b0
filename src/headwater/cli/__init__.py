"""The ``headwater`` command line (Typer + rich).

Every public module in this package registers its commands on :data:`headwater.cli.app.app`
when imported; they are discovered here, so adding a command group is adding a module.
"""

import importlib
import pkgutil

from headwater.cli.app import app, main

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name != "app":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["app", "main"]
