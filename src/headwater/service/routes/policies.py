"""Policy as code over HTTP (admin only): show, history, validate, diff, apply."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from headwater.errors import InvalidInput, NotFound
from headwater.principal import Principal
from headwater.service.deps import platform_of, require_admin
from headwater.service.problems import PROBLEM_RESPONSES

__all__ = ["PolicyDocument", "router"]

router = APIRouter(prefix="/v1/policies", tags=["policies"], responses=PROBLEM_RESPONSES)

_MAX_POLICY = 1_000_000


class PolicyDocument(BaseModel):
    """A policy document sent to validate, diff or apply."""

    model_config = ConfigDict(extra="forbid")

    document: str = Field(min_length=1, max_length=_MAX_POLICY, description="The policy YAML.")
    source: str | None = Field(None, max_length=512, description="Where it came from (recorded on apply).")


class PolicyVersionInfo(BaseModel):
    """One applied policy version."""

    version: int
    content_hash: str
    source: str | None = None
    applied_by: str
    applied_at: dt.datetime
    document: str | None = Field(None, description="The YAML (omitted in the history).")


class Validation(BaseModel):
    """A document that validates."""

    valid: bool
    version: str = Field(description="Content hash of the canonical document.")
    roles: int
    principals: int


class Diff(BaseModel):
    """What applying a document would change."""

    current_version: int | None = Field(description="The version in force (null: none; the platform is open).")
    changes: list[str] = Field(description="One line per change: `+ added`, `- removed`, `~ changed`.")


class Applied(BaseModel):
    """The outcome of an apply."""

    version: int
    changed: bool = Field(description="False when the same document was already in force.")
    roles: int
    principals: int


def _info(v: Any, *, document: bool) -> PolicyVersionInfo:
    return PolicyVersionInfo(version=v.version, content_hash=v.content_hash, source=v.source,
                             applied_by=v.applied_by,
                             applied_at=v.applied_at if v.applied_at.tzinfo else v.applied_at.replace(tzinfo=dt.UTC),
                             document=v.document if document else None)


@router.get("/current", response_model=PolicyVersionInfo, summary="Show the policy",
            operation_id="show_policy")
def show_policy(
    version: Annotated[int | None, Query(ge=1, le=2**62, description="An older version (default: the one in force).")] = None,
    platform: Any = Depends(platform_of),
    who: Principal = Depends(require_admin),
) -> PolicyVersionInfo:
    """The policy in force (or an older version) with its YAML."""
    doc = platform.policies.get(version) if version is not None else platform.policies.latest()
    if doc is None:
        raise NotFound(f"no policy version {version}" if version is not None else
                       "no policy applied; the platform is open")
    return _info(doc, document=True)


@router.get("/history", response_model=list[PolicyVersionInfo], summary="Policy history",
            operation_id="policy_history")
def policy_history(platform: Any = Depends(platform_of), who: Principal = Depends(require_admin)) -> list[PolicyVersionInfo]:
    """Every applied version, oldest first (without the documents)."""
    return [_info(v, document=False) for v in platform.policies.history()]


@router.post("/validate", response_model=Validation, summary="Validate a policy", operation_id="validate_policy")
def validate_policy(body: PolicyDocument, who: Principal = Depends(require_admin)) -> Validation:
    """Check a document without applying it; a bad one is a `PolicyError` naming the line."""
    from headwater.policy import load_policy

    policy = load_policy(body.document, source=body.source or "<request>")
    return Validation(valid=True, version=policy.version, roles=len(policy.roles), principals=len(policy.principals))


@router.post("/diff", response_model=Diff, summary="Diff a policy", operation_id="diff_policy")
def diff_policy(body: PolicyDocument, platform: Any = Depends(platform_of),
                who: Principal = Depends(require_admin)) -> Diff:
    """What applying the document would change against the policy in force."""
    from headwater.policy import load_policy

    new = load_policy(body.document, source=body.source or "<request>")
    current = platform.policies.latest()
    if current is None:
        return Diff(current_version=None, changes=["+ default-deny governance (no policy in force)"])
    old = load_policy(current.document, source=f"version {current.version}")
    return Diff(current_version=current.version, changes=old.diff(new))


@router.post("", response_model=Applied, summary="Apply a policy", operation_id="apply_policy")
def apply_policy(body: PolicyDocument, platform: Any = Depends(platform_of),
                 who: Principal = Depends(require_admin)) -> Applied:
    """Validate and apply: the document becomes the newest version, in force at once (audited)."""
    if not body.document.strip():
        raise InvalidInput("the policy document is empty")
    before = platform.policies.latest()
    version, policy = platform.apply_policy(body.document, source=body.source, applied_by=who.name)
    changed = before is None or before.version != version.version
    return Applied(version=version.version, changed=changed, roles=len(policy.roles),
                   principals=len(policy.principals))
