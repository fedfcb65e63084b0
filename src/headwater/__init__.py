"""Headwater: a governed, multi-source, event-driven data platform.

>>> from headwater import Platform
>>> platform = Platform.open()                       # embedded platform in ./.headwater
>>> session = platform.session("alice")
>>> session.sql("SELECT 42 AS answer").to_pylist()
[{'answer': 42}]
"""

import logging

from headwater.access.session import Result, Session
from headwater.catalog import Catalog, CatalogColumn, Dataset
from headwater.config import Config
from headwater.errors import (
    AccessDenied,
    AuditIntegrityError,
    AuthenticationError,
    ColumnNotFound,
    ConfigError,
    Conflict,
    DatasetNotFound,
    EventBusError,
    HeadwaterError,
    InvalidCursor,
    InvalidInput,
    LegalHoldActive,
    MissingDependency,
    NotFound,
    PolicyError,
    QueryError,
    QueryParseError,
    QueryRejected,
    QueryTimeout,
    SchemaError,
    StoreError,
    StoreUnavailable,
    Transient,
    WriteError,
)
from headwater.platform import Platform
from headwater.principal import Principal
from headwater.stores.base import WriteMode, WriteResult

__version__ = "0.1.0"

logging.getLogger("headwater").addHandler(logging.NullHandler())

__all__ = [
    "AccessDenied",
    "AuditIntegrityError",
    "AuthenticationError",
    "Catalog",
    "CatalogColumn",
    "ColumnNotFound",
    "Config",
    "ConfigError",
    "Conflict",
    "Dataset",
    "DatasetNotFound",
    "EventBusError",
    "HeadwaterError",
    "InvalidCursor",
    "InvalidInput",
    "LegalHoldActive",
    "MissingDependency",
    "NotFound",
    "Platform",
    "PolicyError",
    "Principal",
    "QueryError",
    "QueryParseError",
    "QueryRejected",
    "QueryTimeout",
    "Result",
    "SchemaError",
    "Session",
    "StoreError",
    "StoreUnavailable",
    "Transient",
    "WriteError",
    "WriteMode",
    "WriteResult",
    "__version__",
]
