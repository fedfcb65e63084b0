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


_ACTIONS = ("select", "insert", "update", "delete")


class _Visibility:
    """What of the catalog a principal may see: datasets it holds a grant on, minus denied columns.

    With no policy applied the platform is open and everything is visible.
    """

    def __init__(self, platform: Any, who: Principal) -> None:
        self.who = who
        self.engine = platform.policy_engine()
        self.effective = []
        if self.engine is not None:
            roles, _ = self.engine.resolve(who)
            self.effective = [self.engine.effective(r) for r in roles]

    def dataset(self, d: Any) -> bool:
        if self.engine is None:
            return True
        return any(e.grant(d.name, a) for e in self.effective for a in _ACTIONS)

    def hidden(self, d: Any) -> set[str]:
        if self.engine is None:
            return set()
        return set(self.engine.hidden_columns(d, self.who))


@router.get("", response_model=list[DatasetSummary], summary="List datasets", operation_id="list_datasets")
def list_datasets(
    pattern: Annotated[str, Query(max_length=512, description="Glob over `<store>.<table>`.")] = "*",
    platform: Any = Depends(platform_of),
    who: Principal = Depends(principal),
) -> list[DatasetSummary]:
    """Catalogued datasets whose name matches the glob and that the caller holds a grant on."""
    seen = _Visibility(platform, who)
    out = []
    for d in platform.catalog.list(pattern):
        if not seen.dataset(d):
            continue
        hidden = seen.hidden(d)
        columns = [c for c in d.columns if c.name not in hidden]
        out.append(DatasetSummary(name=d.name, store=d.store, kind=d.kind, columns=len(columns),
                                  primary_key=list(d.primary_key), owner=d.owner,
                                  tags=sorted({t for c in columns for t in c.tags})))
    return out


@router.get("/{dataset}", response_model=DatasetInfo, summary="Show a dataset", operation_id="show_dataset")
def show_dataset(
    dataset: Annotated[str, Path(max_length=512, description="`<store>.<table>`")],
    platform: Any = Depends(platform_of),
    who: Principal = Depends(principal),
) -> DatasetInfo:
    """One dataset: location, primary key, columns with types and tags.

    A dataset the caller holds no grant on is reported as not found; denied columns are left out.
    """
    d = platform.catalog.get(dataset)
    seen = _Visibility(platform, who)
    if not seen.dataset(d):
        from headwater.errors import DatasetNotFound

        raise DatasetNotFound(f"unknown dataset {dataset!r}", dataset=dataset)
    hidden = seen.hidden(d)
    return DatasetInfo(
        name=d.name, store=d.store, table=d.table, kind=d.kind, location=d.location,
        primary_key=list(d.primary_key), owner=d.owner, description=d.description,
        retention_days=d.retention_days, tier=d.tier,
        columns=[ColumnInfo(name=c.name, type=c.type, nullable=c.nullable, tags=list(c.tags),
                            description=c.description) for c in d.columns if c.name not in hidden])
