"""``GET /v1/catalog`` and ``GET /v1/catalog/{dataset}``: catalogued datasets and columns."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from headwater.principal import Principal
from headwater.service.deps import platform_of, principal
from headwater.service.problems import PROBLEM_RESPONSES

__all__ = ["ColumnInfo", "DatasetInfo", "DatasetSummary", "router"]

router = APIRouter(prefix="/v1/catalog", tags=["catalog"], responses=PROBLEM_RESPONSES)


class ColumnInfo(BaseModel):
    """One column."""

    name: str
    type: str = Field(description="Arrow type as text.")
    nullable: bool
    tags: list[str]
    description: str | None = None


class DatasetSummary(BaseModel):
    """One catalogued dataset, briefly."""

    name: str = Field(description="`<store>.<table>`")
    store: str
    kind: str = Field(description="The store kind (sqlite, duckdb, parquet, postgres, snowflake).")
    columns: int
    primary_key: list[str]
    owner: str | None = None
    tags: list[str] = Field(description="Every tag on any of its columns.")


class DatasetInfo(BaseModel):
    """One catalogued dataset in full."""

    name: str
    store: str
    table: str
    kind: str
    location: str
    primary_key: list[str]
    owner: str | None = None
    description: str | None = None
    retention_days: int | None = None
    tier: str | None = None
    columns: list[ColumnInfo]


@router.get("", response_model=list[DatasetSummary], summary="List datasets", operation_id="list_datasets")
def list_datasets(
    pattern: Annotated[str, Query(max_length=512, description="Glob over `<store>.<table>`.")] = "*",
    platform: Any = Depends(platform_of),
    who: Principal = Depends(principal),
) -> list[DatasetSummary]:
    """Catalogued datasets whose name matches the glob."""
    return [DatasetSummary(name=d.name, store=d.store, kind=d.kind, columns=len(d.columns),
                           primary_key=list(d.primary_key), owner=d.owner,
                           tags=sorted({t for c in d.columns for t in c.tags}))
            for d in platform.catalog.list(pattern)]


@router.get("/{dataset}", response_model=DatasetInfo, summary="Show a dataset", operation_id="show_dataset")
def show_dataset(
    dataset: Annotated[str, Path(max_length=512, description="`<store>.<table>`")],
    platform: Any = Depends(platform_of),
    who: Principal = Depends(principal),
) -> DatasetInfo:
    """One dataset: location, primary key, columns with types and tags."""
    d = platform.catalog.get(dataset)
    return DatasetInfo(
        name=d.name, store=d.store, table=d.table, kind=d.kind, location=d.location,
        primary_key=list(d.primary_key), owner=d.owner, description=d.description,
        retention_days=d.retention_days, tier=d.tier,
        columns=[ColumnInfo(name=c.name, type=c.type, nullable=c.nullable, tags=list(c.tags),
                            description=c.description) for c in d.columns])
