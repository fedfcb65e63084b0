"""The public surface of ``headwater`` is pinned by ``__all__`` (httpx's test_exported_members)."""

import types

import headwater

INCLUDED_PRIVATE_MEMBERS = {"__version__"}


def _public_names() -> set[str]:
    return {
        name
        for name, value in vars(headwater).items()
        if (not name.startswith("_") or name in INCLUDED_PRIVATE_MEMBERS)
        and not isinstance(value, types.ModuleType)
    }


def test_all_equals_public_names():
    assert set(headwater.__all__) == _public_names()


def test_all_is_sorted_without_duplicates():
    assert headwater.__all__ == sorted(set(headwater.__all__))


def test_every_exported_name_resolves():
    for name in headwater.__all__:
        assert getattr(headwater, name) is not None, name


def test_exported_classes_have_docstrings():
    for name in headwater.__all__:
        value = getattr(headwater, name)
        if isinstance(value, type):
            assert value.__doc__ and value.__doc__.strip(), name
