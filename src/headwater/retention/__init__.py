"""Retention: delete, null or tokenise old rows on schedule, archive before deleting, respect
legal holds, and trim the platform's own logs -- planned as a dry run, applied and audited.

::

    from headwater.retention import RetentionEngine

    engine = RetentionEngine(platform)
    plan = engine.plan()                  # <platform dir>/retention.yaml, or a path / YAML text
    for a in plan.actions:
        print(a.dataset, a.action, a.rows, a.bytes)
    report = engine.apply(plan, actor="ops")

The policy file is described in :mod:`headwater.retention._model`; legal holds in
:mod:`headwater.retention.holds`. Row changes go through ``Store.delete_rows`` and
``Store.update_rows`` (atomic per call on every backend).
"""

from headwater.retention._archive import ArchiveError, archive_files, erase_from_archives
from headwater.retention._engine import RetentionEngine, token_key
from headwater.retention._model import (
    PlatformLogs,
    RetentionPolicy,
    RetentionRule,
    load_retention,
    parse_duration,
    read_retention_file,
)
from headwater.retention._plan import ActionResult, PlannedAction, RetentionPlan, RetentionReport

__all__ = [
    "ActionResult",
    "ArchiveError",
    "PlannedAction",
    "PlatformLogs",
    "RetentionEngine",
    "RetentionPlan",
    "RetentionPolicy",
    "RetentionReport",
    "RetentionRule",
    "archive_files",
    "erase_from_archives",
    "load_retention",
    "parse_duration",
    "read_retention_file",
    "token_key",
]
