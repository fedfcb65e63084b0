"""The one error hierarchy of Headwater.

Every error the SDK, CLI or service raises on purpose is a :class:`HeadwaterError`. Driver
exceptions (sqlite3, psycopg, duckdb, snowflake, pyarrow, boto) are translated at the store
boundary and never leak. Messages say what to fix and never contain secrets or data the caller
may not see. Context is kept as attributes; every exception pickles.

::

    HeadwaterError
    ├── ConfigError (ValueError)                 bad headwater.yaml, bad env override
    ├── MissingDependency (ImportError)          an optional extra is not installed
    ├── InvalidInput (ValueError)                caller passed something unusable
    │   ├── QueryParseError                      SQL that does not parse
    │   ├── WriteError                           data that does not fit the target
    │   └── InvalidCursor                        tampered, expired or foreign page cursor
    ├── NotFound (LookupError)
    │   ├── DatasetNotFound
    │   └── ColumnNotFound
    ├── StoreError                               a store failed
    │   ├── StoreUnavailable (Transient)         cannot connect / connection dropped
    │   ├── QueryError                           the store rejected or failed the statement
    │   └── QueryTimeout (Transient)
    ├── AccessDenied (PermissionError)           the policy engine said no
    │   └── AuthenticationError                  invalid, expired or revoked credentials
    ├── QueryRejected                            query governance said no
    ├── PolicyError (ValueError)                 policy files that do not validate
    ├── SchemaError (ValueError)                 schema registry / compatibility failures
    ├── EventBusError                            event bus failures
    ├── AuditIntegrityError                      the audit chain is broken where it must be intact
    └── Conflict                                 the platform's state forbids the operation now
        └── LegalHoldActive                      a legal hold covers the data to delete

``Transient`` is a marker mixin: ``isinstance(err, Transient)`` tells retry code the call may
succeed if repeated.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDenied",
    "AuditIntegrityError",
    "AuthenticationError",
    "ColumnNotFound",
    "ConfigError",
    "Conflict",
    "DatasetNotFound",
    "EventBusError",
    "HeadwaterError",
    "InvalidCursor",
    "InvalidInput",
    "LegalHoldActive",
    "MissingDependency",
    "NotFound",
    "PolicyError",
    "QueryError",
    "QueryParseError",
    "QueryRejected",
    "QueryTimeout",
    "SchemaError",
    "StoreError",
    "StoreUnavailable",
    "Transient",
    "WriteError",
]


class HeadwaterError(Exception):
    """Base of every error Headwater raises on purpose.

    Keyword arguments become attributes (``err.dataset``, ``err.store`` ...) and survive
    pickling.
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.context))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[HeadwaterError], message: str, context: dict[str, Any]) -> HeadwaterError:
    return cls(message, **context)


class Transient:
    """Marker: the failed call may succeed if retried (after a backoff)."""


class ConfigError(HeadwaterError, ValueError):
    """The configuration (file, environment or arguments) is invalid."""


class MissingDependency(HeadwaterError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class InvalidInput(HeadwaterError, ValueError):
    """The caller passed a value Headwater cannot use."""


class QueryParseError(InvalidInput):
    """The SQL text does not parse."""


class WriteError(InvalidInput):
    """Data passed to ``write`` does not fit the target dataset; nothing was written."""


class InvalidCursor(InvalidInput):
    """A page cursor is tampered with, expired, or belongs to another query or principal."""


class NotFound(HeadwaterError, LookupError):
    """Something named by the caller does not exist."""


class DatasetNotFound(NotFound):
    """No dataset with this logical name is in the catalog."""


class ColumnNotFound(NotFound):
    """The dataset has no column with this name."""


class StoreError(HeadwaterError):
    """A store failed to do what was asked."""


class StoreUnavailable(StoreError, Transient):
    """The store cannot be reached (connection refused, dropped, timed out on connect)."""


class QueryError(StoreError):
    """The store rejected or failed the statement."""


class QueryTimeout(QueryError, Transient):
    """The statement ran longer than its timeout and was cancelled."""


class AccessDenied(HeadwaterError, PermissionError):
    """The policy engine denied the operation; ``rule`` names the rule that denied it."""


class AuthenticationError(AccessDenied):
    """Credentials are invalid, expired or revoked (the message never says which)."""


class QueryRejected(HeadwaterError):
    """Query governance refused the statement (statement kind, row cap, budget ...)."""


class PolicyError(HeadwaterError, ValueError):
    """A policy document does not validate; ``line`` points at the offending line."""


class SchemaError(HeadwaterError, ValueError):
    """A schema is invalid or incompatible with the subject's earlier versions."""


class EventBusError(HeadwaterError):
    """The event bus failed."""


class AuditIntegrityError(HeadwaterError):
    """The audit chain is broken where an operation needs it intact (``first_bad_seq``)."""


class Conflict(HeadwaterError):
    """The operation is valid but the platform's current state forbids it (HTTP 409)."""


class LegalHoldActive(Conflict):
    """A legal hold covers the dataset or subject to delete; ``holds`` lists the hold ids."""
