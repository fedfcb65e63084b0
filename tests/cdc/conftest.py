"""CDC fixtures (see :mod:`tests.cdc.fix_cdc`)."""

from tests.cdc.fix_cdc import cdc_dsn, names  # noqa: F401
