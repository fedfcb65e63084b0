"""Seed data for access tests: customers in ``app``, orders in ``warehouse``, events in ``lake``.

The same rows are returned as Python lists so tests can compute expected results without SQL.
"""

from __future__ import annotations

import pytest

from tests.access._seed import Seed, load_seed, make_seed


@pytest.fixture
def seed() -> Seed:
    return make_seed()


@pytest.fixture
def seeded(platform, seed) -> Seed:
    """The embedded platform loaded with the seed rows."""
    return load_seed(platform, seed)
