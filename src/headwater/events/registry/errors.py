"""Schema registry errors, all inside Headwater's one hierarchy (:mod:`headwater.errors`).

::

    SchemaError (ValueError)
    ├── InvalidSchema              the schema text does not parse or does not validate
    ├── IncompatibleSchema         violates the subject's compatibility mode; ``messages``
    ├── UnclassifiedPII            adds PII-looking fields without ``x-pii``; ``fields``
    └── NotSoftDeleted             hard delete requested before the soft delete
    NotFound (LookupError)
    ├── SubjectNotFound            ``subject``
    ├── VersionNotFound            ``subject``, ``version``
    └── SchemaNotFound             ``schema_id`` (or ``subject`` for ``lookup``)
"""

from __future__ import annotations

from headwater.errors import NotFound, SchemaError

__all__ = [
    "IncompatibleSchema",
    "InvalidSchema",
    "NotSoftDeleted",
    "SchemaNotFound",
    "SubjectNotFound",
    "UnclassifiedPII",
    "VersionNotFound",
]


class InvalidSchema(SchemaError):
    """The schema does not parse, is not a valid JSON Schema / Avro schema, or its
    references do not resolve."""


class IncompatibleSchema(SchemaError):
    """The schema breaks the subject's compatibility mode; ``messages`` lists each reason
    (path and cause) and ``mode`` names the mode that was enforced."""


class UnclassifiedPII(SchemaError):
    """New fields look like personal data but carry no ``x-pii`` classification;
    ``fields`` lists their paths."""


class NotSoftDeleted(SchemaError):
    """A permanent delete was requested for a subject or version not soft-deleted first."""


class SubjectNotFound(NotFound):
    """No (live) versions are registered under ``subject``."""


class VersionNotFound(NotFound):
    """``subject`` has no (live) version ``version``."""


class SchemaNotFound(NotFound):
    """No schema has id ``schema_id``, or the schema is not registered under ``subject``."""
