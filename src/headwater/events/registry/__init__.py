"""Schema registry: subjects, versions, global ids, compatibility and PII classification.

``SchemaRegistry`` is the storage-backed API (SQLAlchemy engine, SQLite or Postgres);
``check_compatibility`` is the pure checker it uses; ``classifications`` reads ``x-pii`` tags.
Table definitions live in :mod:`headwater.events.registry._tables` (``METADATA``).
"""

from .classify import (
    annotations,
    classifications,
    declassified,
    field_paths,
    looks_like_pii,
    pii_paths,
)
from .compat import (
    CompatibilityMode,
    CompatibilityResult,
    OpenContentPolicy,
    SchemaType,
    check_compatibility,
    load_schema,
)
from .errors import (
    IncompatibleSchema,
    InvalidSchema,
    NotSoftDeleted,
    SchemaNotFound,
    SubjectNotFound,
    UnclassifiedPII,
    VersionNotFound,
)
from .registry import (
    PiiPolicy,
    RegisteredSchema,
    RegistrationResult,
    SchemaReference,
    SchemaRegistry,
    SchemaVersion,
)

__all__ = [
    "CompatibilityMode",
    "CompatibilityResult",
    "IncompatibleSchema",
    "InvalidSchema",
    "NotSoftDeleted",
    "OpenContentPolicy",
    "PiiPolicy",
    "RegisteredSchema",
    "RegistrationResult",
    "SchemaNotFound",
    "SchemaReference",
    "SchemaRegistry",
    "SchemaType",
    "SchemaVersion",
    "SubjectNotFound",
    "UnclassifiedPII",
    "VersionNotFound",
    "annotations",
    "check_compatibility",
    "classifications",
    "declassified",
    "field_paths",
    "load_schema",
    "looks_like_pii",
    "pii_paths",
]
