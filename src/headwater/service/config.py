"""Settings of the HTTP service (``headwater serve``): limits, admin roles, paging defaults.

Passed to :func:`headwater.service.create_app` as ``config=``; every field has a default, so the
service runs with none. Precedence is the caller's: arguments win over the defaults here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ServiceConfig"]


class ServiceConfig(BaseModel):
    """Limits and authorisation settings of one service replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_s: float = Field(50.0, gt=0, description="Requests per second each principal may sustain (token bucket refill).")
    rate_burst: int = Field(100, ge=1, description="Token bucket size: requests a principal may send at once.")
    rate_enabled: bool = Field(True, description="Turn the per-principal rate limit and the failed-authentication throttle off (benchmarks).")
    auth_failure_burst: int = Field(10, ge=1, description="Failed authentications a client address (and, separately, an API key id) may have before more are refused (429) without being verified.")
    auth_failures_per_s: float = Field(0.2, gt=0, description="Refill rate of the failed-authentication buckets (per second).")
    max_json_depth: int = Field(64, ge=2, le=1000, description="Deepest nesting of a JSON request body (400 beyond).")
    max_concurrent: int | None = Field(16, ge=1, description="Requests one principal may have in flight (None: no limit).")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1, description="Largest request body accepted (413 beyond).")
    max_inflated_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest gzip/deflate request body once inflated (413 beyond; inflated incrementally, never whole).")
    admin_roles: tuple[str, ...] = Field(("admin",), description="Roles that may use the admin routes (policies, audit, dead letters).")
    default_page_size: int = Field(1000, ge=1, description="Rows per page when a request names none.")
    max_page_size: int = Field(10_000, ge=1, description="Largest page a request may ask for.")
    realm: str = Field("headwater", description="Realm named in WWW-Authenticate challenges.")
