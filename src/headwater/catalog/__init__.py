"""The catalog: every dataset by logical name ``<store>.<table>``, its columns, tags and owner."""

from headwater.catalog._catalog import Catalog, CatalogColumn, Dataset, SyncReport, normalise_name

__all__ = ["Catalog", "CatalogColumn", "Dataset", "SyncReport", "normalise_name"]
