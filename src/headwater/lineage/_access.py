"""Lineage as one principal may write and read it: the door the SDK, the CLI and HTTP share.

* :meth:`LineageAccess.post` records an OpenLineage event from outside: it needs the
  ``lineage.write`` grant on the event's job namespace (``Platform.authorize(principal,
  "lineage", <job namespace>, "write")``, policy ``{lineage: "airflow://*", actions: [write]}``),
  never works in the platform's own namespace, and is audited either way (``lineage_write`` or
  ``deny``). The edges it records are untrusted and the principal's own.
* :meth:`~LineageAccess.upstream`, :meth:`~LineageAccess.downstream`,
  :meth:`~LineageAccess.impact` and :meth:`~LineageAccess.events` show only datasets the
  principal holds a grant on (any dataset action): others become placeholders without names or
  columns, events naming them are left out. The root itself must be visible (``AccessDenied``).

Without an applied policy the platform is open: every principal may post (still never in the
platform's namespace, still untrusted) and every dataset is visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from headwater.errors import AccessDenied
from headwater.lineage._store import LineageGraph, job_namespace
from headwater.principal import Principal

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["LineageAccess"]


class LineageAccess:
    """The lineage store seen through ``principal``'s grants (``session.lineage``)."""

    def __init__(self, platform: Platform, principal: Principal | str) -> None:
        self.platform = platform
        self.principal = Principal.of(principal)
        self._seen: dict[str, bool] = {}
        self._engine: Any = None

    def __repr__(self) -> str:
        return f"LineageAccess(principal={self.principal.name!r})"

    @property
    def store(self) -> Any:
        """The platform's :class:`~headwater.lineage.LineageStore`."""
        return self.platform.lineage

    # -- writes -----------------------------------------------------------------------------
    def post(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Record an OpenLineage event posted by this principal (an outside producer).

        Raises ``AccessDenied`` without the ``lineage.write`` grant on the job namespace or in
        the platform's own namespace (audited), ``InvalidInput`` for an event that does not
        validate. Returns the event as stored (SQL without literals).
        """
        namespace = job_namespace(event)
        who = self.principal.name
        try:
            self.store.check_namespace(namespace, principal=who)
            rule = self.platform.authorize(self.principal, "lineage", namespace, "write")
        except AccessDenied as err:
            self._audit_denial(err, "lineage_write", extra={"namespace": namespace})
            raise
        stored: dict[str, Any] = self.store.ingest(event, producer=who)
        job = stored["job"]
        self._audit("lineage_write", datasets=_datasets(stored, self.store.identity.display), extra={
            "namespace": job["namespace"], "job": job["name"], "run_id": str(stored["run"]["runId"]),
            "event_type": stored.get("eventType"), "rule": rule})
        return stored

    # -- reads ------------------------------------------------------------------------------
    def can_see(self, dataset: str) -> bool:
        """Whether the principal holds any grant on ``dataset`` (a display name)."""
        engine = self.platform.policy_engine()
        if engine is None:
            return True
        if engine is not self._engine:  # a policy applied since: decide afresh
            self._engine, self._seen = engine, {}
        hit = self._seen.get(dataset)
        if hit is None:
            from headwater.policy import RESOURCE_ACTIONS

            hit = any(engine.allowed(self.principal, "datasets", dataset, a)
                      for a in RESOURCE_ACTIONS["datasets"])
            self._seen[dataset] = hit
        return hit

    def upstream(self, node: str, depth: int | None = None) -> LineageGraph:
        """Where ``node`` comes from, as the principal may see it (every producer's edges)."""
        return self._graph(node, depth, up=True)

    def downstream(self, node: str, depth: int | None = None) -> LineageGraph:
        """What depends on ``node``, as the principal may see it (every producer's edges)."""
        return self._graph(node, depth, up=False)

    def impact(self, node: str) -> LineageGraph:
        """Everything that depends on ``node``, to any depth, as the principal may see it."""
        return self._graph(node, None, up=False)

    def events(self, *, run_id: str | None = None, job_name: str | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
        """Stored events whose every dataset the principal may see (oldest first)."""
        out: list[dict[str, Any]] = self.store.events(run_id=run_id, job_name=job_name, limit=limit,
                                                      visible=self.can_see)
        self._audit("lineage_read", extra={"events": len(out), "run_id": run_id, "job_name": job_name})
        return out

    def _graph(self, node: str, depth: int | None, *, up: bool) -> LineageGraph:
        walk = self.store.upstream if up else self.store.downstream
        try:
            graph: LineageGraph = walk(node, depth, trusted_only=False, visible=self.can_see)
        except AccessDenied as err:
            self._audit_denial(err, "lineage_read", extra={})
            raise
        root = next((n.dataset for n in graph.nodes if n.depth == 0), graph.root)
        self._audit("lineage_read", datasets=[root], extra={"direction": graph.direction, "hidden": graph.hidden})
        return graph

    # -- audit ------------------------------------------------------------------------------
    def _audit(self, action: str, *, datasets: list[str] | None = None, extra: dict[str, Any]) -> None:
        if not self.platform.config.audit.enabled:
            return
        from headwater.audit import AuditEvent

        self.platform.record(AuditEvent(actor=self.principal.name, action=action, datasets=datasets or (),
                                        extra={k: v for k, v in extra.items() if v is not None}))

    def _audit_denial(self, err: AccessDenied, attempted: str, *, extra: dict[str, Any]) -> None:
        if not self.platform.config.audit.enabled:
            return
        from headwater.audit import AuditEvent

        rule = str(err.context.get("rule") or "unknown")
        ds = [d for d in [err.context.get("dataset")] if d]
        self.platform.record(AuditEvent(actor=self.principal.name, action="deny", datasets=ds, decision="deny",
                                        reason=str(err), extra={"rule": rule, "attempted": attempted, **extra}))


def _datasets(event: Mapping[str, Any], disp: Any) -> list[str]:
    names = {disp(ds["namespace"], ds["name"]) for kind in ("inputs", "outputs") for ds in event.get(kind) or ()}
    return sorted(names)
