"""The error hierarchy: categories, builtin mix-ins, the Transient marker and pickling."""

import pickle

import pytest

import headwater
from headwater import errors
from headwater.errors import (
    AccessDenied,
    AuthenticationError,
    ColumnNotFound,
    ConfigError,
    DatasetNotFound,
    EventBusError,
    HeadwaterError,
    InvalidCursor,
    InvalidInput,
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

ALL_ERRORS = [
    AccessDenied, AuthenticationError, ColumnNotFound, ConfigError, DatasetNotFound,
    EventBusError, InvalidCursor, InvalidInput, MissingDependency, NotFound, PolicyError,
    QueryError, QueryParseError, QueryRejected, QueryTimeout, SchemaError, StoreError,
    StoreUnavailable, WriteError,
]


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (ConfigError, ValueError),
        (MissingDependency, ImportError),
        (InvalidInput, ValueError),
        (QueryParseError, InvalidInput),
        (WriteError, InvalidInput),
        (WriteError, ValueError),
        (InvalidCursor, InvalidInput),
        (NotFound, LookupError),
        (DatasetNotFound, NotFound),
        (ColumnNotFound, NotFound),
        (ColumnNotFound, LookupError),
        (StoreUnavailable, StoreError),
        (QueryError, StoreError),
        (QueryTimeout, QueryError),
        (QueryTimeout, StoreError),
        (AccessDenied, PermissionError),
        (AuthenticationError, AccessDenied),
        (AuthenticationError, PermissionError),
        (PolicyError, ValueError),
        (SchemaError, ValueError),
    ],
)
def test_hierarchy(cls, parent):
    assert issubclass(cls, parent)


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_every_error_is_a_headwater_error(cls):
    assert issubclass(cls, HeadwaterError)
    assert issubclass(cls, Exception)


@pytest.mark.parametrize(
    ("cls", "not_parent"),
    [
        (QueryRejected, InvalidInput),
        (QueryRejected, AccessDenied),
        (DatasetNotFound, InvalidInput),
        (StoreError, ValueError),
        (EventBusError, StoreError),
        (AccessDenied, ValueError),
        (InvalidInput, LookupError),
    ],
)
def test_categories_are_separate(cls, not_parent):
    assert not issubclass(cls, not_parent)


def test_transient_marker():
    transient = {cls for cls in ALL_ERRORS if issubclass(cls, Transient)}
    assert transient == {StoreUnavailable, QueryTimeout}
    assert isinstance(StoreUnavailable("down"), Transient)
    assert isinstance(QueryTimeout("slow"), Transient)
    assert not isinstance(QueryError("bad"), Transient)
    assert not isinstance(WriteError("bad"), Transient)


def test_builtin_except_clauses_catch_headwater_errors():
    with pytest.raises(PermissionError):
        raise AccessDenied("no", rule="deny-all")
    with pytest.raises(ValueError):
        raise WriteError("bad row", dataset="app.t")
    with pytest.raises(LookupError):
        raise DatasetNotFound("missing", dataset="app.t")
    with pytest.raises(ImportError):
        raise MissingDependency("pip install 'headwater[postgres]'", extra="postgres")


def test_context_becomes_attributes():
    err = ColumnNotFound("no column 'x'", dataset="app.t", column="x")
    assert str(err) == "no column 'x'"
    assert err.message == "no column 'x'"
    assert err.dataset == "app.t"
    assert err.column == "x"
    assert err.context == {"dataset": "app.t", "column": "x"}


@pytest.mark.parametrize("cls", [HeadwaterError, *ALL_ERRORS])
def test_pickle_round_trip_keeps_message_and_context(cls):
    err = cls("something went wrong", store="app", dataset="app.t", line=3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == "something went wrong"
    assert back.message == "something went wrong"
    assert back.context == {"store": "app", "dataset": "app.t", "line": 3}
    assert back.store == "app"
    assert back.dataset == "app.t"
    assert back.line == 3


def test_pickle_without_context():
    back = pickle.loads(pickle.dumps(QueryTimeout("slow")))
    assert isinstance(back, QueryTimeout)
    assert isinstance(back, Transient)
    assert back.context == {}
    assert str(back) == "slow"


def test_errors_module_all_matches_classes():
    defined = {
        name for name, value in vars(errors).items()
        if isinstance(value, type) and value.__module__ == errors.__name__ and not name.startswith("_")
    }
    assert set(errors.__all__) == defined
    # every error is re-exported from the package root
    assert defined <= set(headwater.__all__)


def test_hierarchy_docstring_names_every_error():
    for name in errors.__all__:
        assert name in errors.__doc__, name
