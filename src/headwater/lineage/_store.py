"""Lineage in the metadata store: events, edges, and the graph over them.

:meth:`LineageStore.emit` (the platform's own runs) and :meth:`LineageStore.ingest` (events
posted by an outside producer, a principal) normalise an event's datasets to their one identity,
remove the literals of its SQL (:mod:`headwater.lineage._sql`), validate it against the
OpenLineage schemas, store it (JSON) with its provenance and, for a COMPLETE event, replace the
edges *this producer* recorded for the job into the datasets it wrote; then they send the event
to the HTTP endpoint, if one is configured (a delivery failure is logged and recorded, never
raised: lineage must not fail the write it describes).

Provenance and trust:

* What :meth:`~LineageStore.emit` records is **trusted** (``LineageEdge.trusted``): the platform
  derived it from SQL it ran itself (or from its CDC pipeline). What
  :meth:`~LineageStore.ingest` records is not, and keeps the posting principal
  (``LineageEdge.producer``). Outside producers cannot use the platform's job namespace
  (:meth:`~LineageStore.reserved`: the store's ``job_namespace`` and every ``headwater``
  namespace); a COMPLETE event replaces only the same producer's edges for that job, so no event
  from outside replaces or deletes an edge the platform (or another producer) recorded.
* An output without a ``columnLineage`` facet leaves that job's column edges into it as they
  are, and an event without inputs leaves its dataset edges (only the platform's own events,
  which always say everything, replace them then): saying nothing erases nothing.
* Graph queries follow **only trusted edges by default** (``trusted_only=True``): that is what
  erasure must follow, so a forged ``IDENTITY`` edge never decides whose rows are deleted.
  :meth:`~LineageStore.copies_of` is the erasure API: the columns that copy a column unchanged
  (``DIRECT``/``IDENTITY``), trusted edges only. Readers that want the whole picture pass
  ``trusted_only=False`` (the governed views of :class:`headwater.lineage.LineageAccess` do).
* ``visible=`` (a predicate on dataset names) hides the datasets a reader may not see: each
  becomes an opaque placeholder node (``<hidden dataset 1>``, :attr:`LineageNode.hidden`) with
  no name, no columns and no job on its edges; :attr:`LineageGraph.hidden` counts them.

Graph queries walk the edges breadth-first, one query per level, to any depth. A column node is
``<store>.<table>.<column>``; a dataset node ``<store>.<table>``. An input that affects a whole
dataset (JOIN, FILTER, GROUP_BY, SORT) makes every column of that dataset depend on it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from headwater.errors import AccessDenied, InvalidInput, NotFound
from headwater.lineage._events import PRODUCER, build_run_events, complete_event, fail_event
from headwater.lineage._extract import LineageResult, SchemaLike, column_lineage
from headwater.lineage._identity import SCHEME, IdentityMap
from headwater.lineage._sql import scrub_event
from headwater.lineage._tables import (
    aliases_table,
    column_edges_table,
    dataset_edges_table,
    events_table,
)
from headwater.lineage._transport import HttpTransport, LineageDeliveryError
from headwater.lineage._validate import EventValidator, default_validator

if TYPE_CHECKING:
    from headwater.metadata import MetadataStore

__all__ = ["WITHHELD", "LineageEdge", "LineageGraph", "LineageNode", "LineageRun", "LineageStore", "job_namespace"]

log = logging.getLogger("headwater.lineage")

_WHOLE = ""
"""``dst_field`` of an edge into a whole dataset; also the field of a dataset node."""
_BATCH = 500
_MAX_DEPTH = 64
"""Deepest JSON nesting an event may have (a facet is not a place for deep recursion)."""
_LIMITS = {"namespace": 255, "name": 512, "field": 255, "run": 64, "time": 64, "type": 16}
"""Longest value per kind of name (the columns' sizes): longer ones are refused, never cut."""

Visible = Callable[[str], bool]
"""Whether a reader may see a dataset (by its display name: ``<store>.<table>`` or
``namespace/name``)."""


@dataclass(frozen=True, slots=True, order=True)
class LineageNode:
    """A dataset (``field is None``) or a column, and how many edges from the root it is."""

    dataset: str
    """``<store>.<table>`` (``namespace/name`` for a dataset outside this platform), or a
    placeholder (``<hidden dataset 1>``) for a dataset the reader may not see."""
    field: str | None
    depth: int = 0
    hidden: bool = False
    """A placeholder for a dataset the reader may not see (no name, no columns)."""

    @property
    def name(self) -> str:
        """``dataset`` or ``dataset.field``."""
        return self.dataset if self.field is None else f"{self.dataset}.{self.field}"


@dataclass(frozen=True, slots=True, order=True)
class LineageEdge:
    """``source`` feeds ``target`` (names as :attr:`LineageNode.name`)."""

    source: str
    target: str
    type: str
    """``DIRECT``/``INDIRECT`` for column edges, ``DATASET`` for dataset edges."""
    subtype: str
    job: str
    """``namespace/name`` of the job (``<store>.<table>``-style for the platform's own); empty on
    an edge into or out of a hidden dataset."""
    trusted: bool = True
    """Recorded by the platform itself (not posted by an outside producer)."""
    producer: str = ""
    """The principal that posted it (empty for the platform's own edges)."""


@dataclass(slots=True)
class LineageGraph:
    """What a graph query reached."""

    root: str
    direction: str
    """``upstream`` or ``downstream``."""
    nodes: list[LineageNode] = field(default_factory=list)
    edges: list[LineageEdge] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        """Datasets reached (not the root, not hidden ones), sorted."""
        return sorted({n.dataset for n in self.nodes if n.depth > 0 and not n.hidden})

    @property
    def columns(self) -> list[str]:
        """Columns reached (``<store>.<table>.<column>``), sorted; the root excluded."""
        return sorted({n.name for n in self.nodes if n.field is not None and n.depth > 0 and not n.hidden})

    @property
    def hidden(self) -> int:
        """How many datasets reached the reader may not see (shown as placeholders)."""
        return sum(1 for n in self.nodes if n.hidden)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for the CLI and the HTTP service)."""
        return {
            "root": self.root, "direction": self.direction,
            "datasets": self.datasets, "columns": self.columns, "hidden": self.hidden,
            "nodes": [{"dataset": n.dataset, "field": n.field, "depth": n.depth, "hidden": n.hidden}
                      for n in self.nodes],
            "edges": [{"source": e.source, "target": e.target, "type": e.type, "subtype": e.subtype,
                       "job": e.job, "trusted": e.trusted, "producer": e.producer} for e in self.edges],
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LineageRun:
    """A run being tracked by :meth:`LineageStore.track`; set :attr:`rows_written` before it ends."""

    def __init__(self, start: dict[str, Any], result: LineageResult) -> None:
        self.start = start
        self.result = result
        self.rows_written: int | None = None
        self.end: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        """The OpenLineage run id."""
        return str(self.start["run"]["runId"])


class LineageStore:
    """OpenLineage events and the lineage graph in the metadata store.

    ``platform`` names this Headwater platform in dataset namespaces (``headwater://<platform>``);
    ``identity`` maps other producers' dataset names to Headwater's (aliases stored in the
    metadata store are added to it); ``transport`` (or ``url``) sends events on.
    """

    def __init__(
        self,
        meta: MetadataStore,
        *,
        platform: str = "default",
        identity: IdentityMap | None = None,
        transport: HttpTransport | None = None,
        url: str | None = None,
        validator: EventValidator | None = None,
        job_namespace: str | None = None,
    ) -> None:
        self.meta = meta
        self.identity = identity or IdentityMap(platform)
        self.transport = transport or (HttpTransport(url) if url else None)
        self._validator = validator
        self.job_namespace = job_namespace or self.identity.namespace
        self._load_aliases()

    def __repr__(self) -> str:
        return f"LineageStore(meta={self.meta!r}, identity={self.identity!r}, transport={self.transport!r})"

    @property
    def validator(self) -> EventValidator:
        """The schema validator (built on first use)."""
        if self._validator is None:
            self._validator = default_validator()
        return self._validator

    # -- aliases -----------------------------------------------------------------------
    def _load_aliases(self) -> None:
        with self.meta.connect() as conn:
            for r in conn.execute(sa.select(aliases_table)):
                if r.canonical_namespace == self.identity.namespace:
                    self.identity.add_alias(r.namespace, r.name, r.canonical_name)

    def add_alias(self, namespace: str, name: str, logical_name: str) -> None:
        """Record that ``(namespace, name)`` reported by another producer is ``logical_name``."""
        self.identity.add_alias(namespace, name, logical_name)
        ns, canon = self.identity.identity(logical_name)
        with self.meta.begin() as conn:
            self._save_aliases(conn, [(namespace, name, ns, canon)])

    def _save_aliases(self, conn: sa.Connection, rewrites: Iterable[tuple[str, str, str, str]]) -> None:
        for ns, name, cns, cname in rewrites:
            key = (aliases_table.c.namespace == ns) & (aliases_table.c.name == name)
            if conn.execute(sa.select(aliases_table.c.name).where(key)).first() is None:
                conn.execute(sa.insert(aliases_table).values(
                    namespace=ns, name=name, canonical_namespace=cns, canonical_name=cname,
                    created_at=_now()))
            else:
                conn.execute(sa.update(aliases_table).where(key).values(
                    canonical_namespace=cns, canonical_name=cname))

    # -- events ------------------------------------------------------------------------
    def reserved(self, namespace: str) -> bool:
        """Whether ``namespace`` is the platform's own (its ``job_namespace``, or any
        ``headwater`` namespace): outside producers may not post events in it."""
        ns = namespace.strip().lower()
        scheme = ns.split(":", 1)[0]
        return ns in {self.job_namespace.lower(), self.identity.namespace.lower()} or scheme == SCHEME

    def check_namespace(self, namespace: str, *, principal: str | None = None) -> None:
        """Raise ``AccessDenied`` when an outside producer may not post in ``namespace``."""
        if self.reserved(namespace):
            who = principal or "an outside producer"
            raise AccessDenied(
                f"{who} may not write lineage in job namespace {namespace}: it is reserved for the "
                "platform's own runs (rule reserved-namespace)",
                rule="reserved-namespace", principal=principal, namespace=namespace, action="write")

    def emit(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Record one OpenLineage event of the platform's own (trusted: erasure follows its
        edges); normalise, scrub, validate, store and (optionally) send it.

        For the platform's runs only (the SDK write path, CDC): events from anyone else go
        through :meth:`ingest`. Returns the event as stored. Raises ``InvalidLineageEvent``
        when it does not validate (nothing is stored then).
        """
        return self._store(event, producer=None)

    def ingest(self, event: Mapping[str, Any], *, producer: str) -> dict[str, Any]:
        """Record one OpenLineage event posted by the outside principal ``producer``.

        Its edges are untrusted (erasure never follows them) and replace only ``producer``'s
        own edges for the job; the platform's job namespaces are refused (``AccessDenied``).
        Authorisation (the ``lineage.write`` grant) is the caller's: see
        :meth:`headwater.lineage.LineageAccess.post`.
        """
        if not isinstance(producer, str) or not producer.strip():
            raise InvalidInput("an outside producer is named by its principal")
        if len(producer) > _LIMITS["namespace"]:
            raise InvalidInput(f"a producer's principal name is at most {_LIMITS['namespace']} characters")
        self.check_namespace(job_namespace(event), principal=producer)
        return self._store(event, producer=producer)

    def _store(self, event: Mapping[str, Any], *, producer: str | None) -> dict[str, Any]:
        if not isinstance(event, Mapping):
            raise InvalidInput("an OpenLineage event is a JSON object")
        _check_depth(event)
        trusted = producer is None
        # A symlinks facet added here is Headwater's, whoever produced the event.
        normalised, rewrites = self.identity.normalise_event(event, producer=PRODUCER)
        # The literals of its SQL never reach the store, the endpoint or a reader.
        scrub_event(normalised)
        self.validator.validate(normalised)
        if "run" not in normalised:
            raise InvalidInput("only RunEvents are stored (this is a DatasetEvent or JobEvent)")
        _check_sizes(normalised)
        payload = json.dumps(normalised, separators=(",", ":"), sort_keys=True)
        job = normalised["job"]
        run_id = str(normalised["run"]["runId"])
        with self.meta.begin() as conn:
            if rewrites and trusted:
                # Aliases learnt from outside events stay in that event: one producer's claim
                # about a name must not rename another producer's (or the platform's) datasets.
                self._save_aliases(conn, rewrites)
            row_id = conn.execute(sa.insert(events_table).values(
                run_id=run_id, event_type=normalised.get("eventType") or "OTHER",
                event_time=normalised["eventTime"], job_namespace=job["namespace"],
                job_name=job["name"], producer=normalised["producer"], payload=payload,
                delivered=None, received_at=_now(), trusted=trusted, principal=producer or "",
            ).returning(events_table.c.id)).scalar_one()
            if normalised.get("eventType") == "COMPLETE":
                self._replace_edges(conn, normalised, trusted=trusted, producer=producer or "")
        if self.transport is not None:
            delivered = True
            try:
                self.transport.send(normalised)
            except LineageDeliveryError as err:
                delivered = False
                log.warning("lineage event %s not delivered: %s", run_id, err)
            with self.meta.begin() as conn:
                conn.execute(sa.update(events_table).where(events_table.c.id == row_id)
                             .values(delivered=delivered))
        return normalised

    def _replace_edges(self, conn: sa.Connection, event: Mapping[str, Any], *, trusted: bool,
                       producer: str) -> None:
        job_ns, job_name = event["job"]["namespace"], event["job"]["name"]
        run_id = str(event["run"]["runId"])
        now = _now()
        inputs = [(d["namespace"], d["name"]) for d in event.get("inputs") or ()]
        ds_rows: list[dict[str, Any]] = []
        col_rows: dict[tuple[str, ...], dict[str, Any]] = {}
        common = dict(job_namespace=job_ns, job_name=job_name, run_id=run_id, trusted=trusted,
                      producer=producer, created_at=now)
        for out in event.get("outputs") or ():
            dst_ns, dst = out["namespace"], out["name"]

            def mine(t: sa.Table, dst_ns: str = dst_ns, dst: str = dst) -> Any:
                # Only this producer's edges of this job into this output: never the platform's
                # (trusted) ones from an outside event, nor another producer's.
                return ((t.c.job_namespace == job_ns) & (t.c.job_name == job_name)
                        & (t.c.dst_namespace == dst_ns) & (t.c.dst_name == dst)
                        & (t.c.trusted == trusted) & (t.c.producer == producer))

            if inputs or trusted:
                conn.execute(sa.delete(dataset_edges_table).where(mine(dataset_edges_table)))
                for src_ns, src in dict.fromkeys(inputs):
                    ds_rows.append(dict(common, src_namespace=src_ns, src_name=src, dst_namespace=dst_ns,
                                        dst_name=dst))
            cl = (out.get("facets") or {}).get("columnLineage")
            if not isinstance(cl, Mapping):
                continue  # says nothing about columns: the column edges stay as they are
            conn.execute(sa.delete(column_edges_table).where(mine(column_edges_table)))
            for dst_field, f, t in _column_pairs(cl):
                row = dict(common, src_namespace=f["namespace"], src_name=f["name"], src_field=f["field"],
                           dst_namespace=dst_ns, dst_name=dst, dst_field=dst_field,
                           type=str(t.get("type") or "")[:16], subtype=str(t.get("subtype") or "")[:32])
                col_rows[tuple(str(v) for k, v in row.items() if k != "created_at")] = row
        if ds_rows:
            conn.execute(sa.insert(dataset_edges_table), ds_rows)
        if col_rows:
            conn.execute(sa.insert(column_edges_table), list(col_rows.values()))

    def events(self, *, run_id: str | None = None, job_name: str | None = None,
               limit: int | None = None, visible: Visible | None = None) -> list[dict[str, Any]]:
        """Stored events (oldest first), optionally for one run or one job.

        With ``visible``, only events every dataset of which the reader may see are returned,
        and an SQL facet naming a table the reader may not see has its query withheld.
        """
        q = sa.select(events_table.c.payload).order_by(events_table.c.id)
        if run_id is not None:
            q = q.where(events_table.c.run_id == run_id)
        if job_name is not None:
            q = q.where(events_table.c.job_name == job_name)
        if limit is not None and visible is None:
            q = q.limit(limit)
        out: list[dict[str, Any]] = []
        with self.meta.connect() as conn:
            for r in conn.execute(q):
                event = json.loads(r.payload)
                if visible is not None:
                    event = self._visible_event(event, visible)
                    if event is None:
                        continue
                out.append(event)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _visible_event(self, event: dict[str, Any], visible: Visible) -> dict[str, Any] | None:
        disp = self.identity.display
        names = set()
        for kind in ("inputs", "outputs"):
            for ds in event.get(kind) or ():
                names.add(disp(ds["namespace"], ds["name"]))
                cl = (ds.get("facets") or {}).get("columnLineage") if kind == "outputs" else None
                if isinstance(cl, Mapping):
                    names.update(disp(f["namespace"], f["name"]) for _, f, _ in _column_pairs(cl))
        if not all(visible(n) for n in names):
            return None
        sql = ((event.get("job") or {}).get("facets") or {}).get("sql")
        if isinstance(sql, dict) and not all(visible(n) for n in _sql_tables(sql.get("query"), sql.get("dialect"))):
            sql["query"] = WITHHELD
        return event

    # -- the write path ----------------------------------------------------------------
    def lineage(self, sql: str, *, schema: SchemaLike, target: str | None = None,
                dialect: str = "duckdb") -> LineageResult:
        """:func:`~headwater.lineage.column_lineage` (here for callers holding a store)."""
        return column_lineage(sql, schema=schema, target=target, dialect=dialect)

    @contextlib.contextmanager
    def track(
        self,
        sql: str,
        *,
        schema: SchemaLike,
        job_name: str,
        target: str | None = None,
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
        schemas: Mapping[str, Any] | None = None,
        job_namespace: str | None = None,
        dialect: str = "duckdb",
    ) -> Iterator[LineageRun]:
        """Emit START, run the body, then emit COMPLETE (or FAIL and re-raise).

        For the SDK write path::

            with lineage.track(sql, schema=catalog_schema, job_name="alice.write") as run:
                run.rows_written = execute(sql)
        """
        result = column_lineage(sql, schema=schema, target=target, dialect=dialect)
        if schemas is None and not callable(schema):
            schemas = schema
        elif schemas is None:
            names = [*(inputs if inputs is not None else result.inputs)]
            schemas = {n: c for n in names if isinstance(n, str) and (c := schema(n)) is not None}
        start, _ = build_run_events(
            job_namespace or self.job_namespace, job_name, sql, result, inputs, outputs,
            schemas=schemas, identity=self.identity,
        )
        self.emit(start)
        run = LineageRun(start, result)
        try:
            yield run
        except BaseException as err:
            run.end = fail_event(start, err)
            self.emit(run.end)
            raise
        run.end = complete_event(start, rows_written=run.rows_written)
        self.emit(run.end)

    # -- graph -------------------------------------------------------------------------
    def _parse(self, ref: str | tuple[str, ...]) -> tuple[str, str, str | None]:
        """(namespace, dataset name, field or None) of a node reference."""
        if isinstance(ref, tuple):
            if len(ref) == 3:
                ns, name, fld = ref
                return (*self.identity.canonical(ns, name), fld)
            if len(ref) == 2:
                return (*self.identity.canonical(*ref), None)
            raise InvalidInput("a node is (namespace, name) or (namespace, name, field)")
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidInput("name a node as <store>.<table> or <store>.<table>.<column>")
        ns = self.identity.namespace
        text = ref
        if "://" in ref:
            ns_part, _, text = ref.partition("://")
            host, _, text = text.partition("/")
            ns = f"{ns_part}://{host}"
        if self._known_dataset(ns, text):
            return (*self.identity.canonical(ns, text), None)
        if "." in text:
            ds, _, fld = text.rpartition(".")
            if self._known_dataset(ns, ds):
                return (*self.identity.canonical(ns, ds), fld)
        if text.count(".") >= 2:
            ds, _, fld = text.rpartition(".")
            return (*self.identity.canonical(ns, ds), fld)
        return (*self.identity.canonical(ns, text), None)

    def _known_dataset(self, ns: str, name: str) -> bool:
        ns, name = self.identity.canonical(ns, name)
        with self.meta.connect() as conn:
            for t in (dataset_edges_table,):
                for side in ("src", "dst"):
                    q = sa.select(sa.literal(1)).where(
                        (t.c[f"{side}_namespace"] == ns) & (t.c[f"{side}_name"] == name)).limit(1)
                    if conn.execute(q).first() is not None:
                        return True
        return False

    def root_dataset(self, node: str | tuple[str, ...]) -> str:
        """The display name of the dataset a node reference names (``app.customers`` for
        ``app.customers.email``)."""
        ns, name, _ = self._parse(node)
        return self.identity.display(ns, name)

    def upstream(self, node: str | tuple[str, ...], depth: int | None = None, *, trusted_only: bool = True,
                 visible: Visible | None = None) -> LineageGraph:
        """Datasets and columns ``node`` (``<store>.<table>`` or ``<store>.<table>.<column>``)
        is derived from, to ``depth`` edges (all when None).

        ``trusted_only`` (the default) follows only edges the platform recorded itself;
        ``visible`` replaces the datasets a reader may not see by placeholders.
        """
        return self._walk(node, depth, up=True, trusted_only=trusted_only, visible=visible)

    def downstream(self, node: str | tuple[str, ...], depth: int | None = None, *, trusted_only: bool = True,
                   visible: Visible | None = None) -> LineageGraph:
        """Datasets and columns derived from ``node``, to ``depth`` edges (all when None);
        ``trusted_only`` and ``visible`` as for :meth:`upstream`."""
        return self._walk(node, depth, up=False, trusted_only=trusted_only, visible=visible)

    def impact(self, node: str | tuple[str, ...], *, trusted_only: bool = True,
               visible: Visible | None = None) -> LineageGraph:
        """Everything that depends on ``node`` (``app.customers.email``), to any depth."""
        return self._walk(node, None, up=False, trusted_only=trusted_only, visible=visible)

    def copies_of(self, dataset: str, column: str, *, trusted_only: bool = True) -> list[LineageEdge]:
        """The columns that hold ``dataset.column`` unchanged: its ``DIRECT``/``IDENTITY``
        edges one hop downstream (``edge.target`` is ``<store>.<table>.<column>``).

        This is what erasure follows: by default only edges the platform recorded itself, so an
        edge posted from outside (a forged ``IDENTITY``) never makes erasure touch a dataset.
        """
        ns, name = self.identity.identity(dataset)
        graph = self._walk((ns, name, column), 1, up=False, trusted_only=trusted_only, visible=None)
        source = _node_name(self.identity.display, (ns, name, column)).lower()
        return [e for e in graph.edges if e.source.lower() == source and e.type == "DIRECT"
                and e.subtype == "IDENTITY"]

    def _walk(self, ref: str | tuple[str, ...], depth: int | None, *, up: bool, trusted_only: bool,
              visible: Visible | None) -> LineageGraph:
        if depth is not None and depth < 0:
            raise InvalidInput("depth must be >= 0")
        ns, name, fld = self._parse(ref)
        disp = self.identity.display
        if visible is not None and not visible(disp(ns, name)):
            raise AccessDenied(f"no grant on {disp(ns, name)}: its lineage is not shown (rule default-deny)",
                               rule="default-deny", dataset=disp(ns, name), action="lineage")
        seen_nodes: dict[tuple[str, str, str | None], int] = {(ns, name, fld): 0}
        seen_edges: set[_Edge] = set()
        ce, de = column_edges_table, dataset_edges_table
        near, far = ("dst", "src") if up else ("src", "dst")

        # Column level: a frontier of (ns, name, field) with field None = every field.
        frontier: set[tuple[str, str, str | None]] = {(ns, name, fld)}
        level = 0
        while frontier and (depth is None or level < depth):
            level += 1
            rows = self._edges(ce, near, {(n, d) for n, d, _ in frontier}, trusted_only)
            nxt: set[tuple[str, str, str | None]] = set()
            for r in rows:
                here = (r[f"{near}_namespace"], r[f"{near}_name"], r[f"{near}_field"])
                if not self._matches(here, frontier, up=up):
                    continue
                there_field = r[f"{far}_field"] or None
                there = (r[f"{far}_namespace"], r[f"{far}_name"], there_field)
                src = (r["src_namespace"], r["src_name"], r["src_field"] or None)
                dst = (r["dst_namespace"], r["dst_name"], r["dst_field"] or None)
                seen_edges.add(_Edge(src, dst, r["type"], r["subtype"], r["job_namespace"], r["job_name"],
                                     bool(r["trusted"]), r["producer"] or ""))
                if there not in seen_nodes:
                    seen_nodes[there] = level
                    nxt.add(there)
            frontier = nxt

        # Dataset level (for a dataset root): datasets linked by jobs that reported no column
        # lineage still count. A column root follows column edges only.
        dfrontier = {(ns, name)} if fld is None else set()
        dseen = {(ns, name)} | {(n, d) for n, d, _ in seen_nodes}
        level = 0
        while dfrontier and (depth is None or level < depth):
            level += 1
            nxt_ds: set[tuple[str, str]] = set()
            for r in self._edges(de, near, dfrontier, trusted_only):
                there_ds = (r[f"{far}_namespace"], r[f"{far}_name"])
                seen_edges.add(_Edge((r["src_namespace"], r["src_name"], None),
                                     (r["dst_namespace"], r["dst_name"], None), "DATASET", "",
                                     r["job_namespace"], r["job_name"], bool(r["trusted"]), r["producer"] or ""))
                if there_ds not in dseen:
                    dseen.add(there_ds)
                    nxt_ds.add(there_ds)
                    seen_nodes.setdefault((*there_ds, None), level)
            dfrontier = nxt_ds
        return self._render((ns, name, fld), "upstream" if up else "downstream", seen_nodes, seen_edges, visible)

    def _render(self, root: tuple[str, str, str | None], direction: str,
                nodes: Mapping[tuple[str, str, str | None], int], edges: Iterable[_Edge],
                visible: Visible | None) -> LineageGraph:
        """The graph as a reader sees it: names for visible datasets, placeholders for others."""
        disp = self.identity.display
        shown: dict[tuple[str, str], bool] = {}

        def sees(ns: str, name: str) -> bool:
            if visible is None:
                return True
            if (ns, name) not in shown:
                shown[(ns, name)] = bool(visible(disp(ns, name)))
            return shown[(ns, name)]

        # Placeholders are numbered by depth, then in an order that says nothing about names.
        salt = secrets.token_bytes(16)
        first: dict[tuple[str, str], int] = {}
        for (n, d, _), lvl in nodes.items():
            if not sees(n, d):
                first[(n, d)] = min(lvl, first.get((n, d), lvl))
        order = sorted(first, key=lambda k: (first[k], hashlib.sha256(salt + repr(k).encode()).digest()))
        placeholder = {k: f"<hidden dataset {i}>" for i, k in enumerate(order, start=1)}

        def label(node: tuple[str, str, str | None]) -> str:
            key = (node[0], node[1])
            return placeholder[key] if key in placeholder else _node_name(disp, node)

        out: dict[tuple[str, str | None, bool], int] = {}
        for (n, d, f), lvl in nodes.items():
            if (n, d) in placeholder:
                key = (placeholder[(n, d)], None, True)
            else:
                key = (disp(n, d), f, False)
            out[key] = min(lvl, out.get(key, lvl))
        graph = LineageGraph(_node_name(disp, root), direction)
        graph.nodes = [LineageNode(ds, f, lvl, hidden) for (ds, f, hidden), lvl in out.items()]
        # A dataset reached only through its columns is still a node of its own.
        have = {(x.dataset, x.field) for x in graph.nodes}
        for x in list(graph.nodes):
            if x.field is not None and (x.dataset, None) not in have:
                have.add((x.dataset, None))
                graph.nodes.append(LineageNode(x.dataset, None, x.depth))
        graph.nodes.sort(key=lambda x: (x.depth, x.dataset, x.field or ""))
        shown_edges: set[LineageEdge] = set()
        for e in edges:
            hidden = (e.src[0], e.src[1]) in placeholder or (e.dst[0], e.dst[1]) in placeholder
            source, target = label(e.src), label(e.dst)
            if hidden and source == target:
                continue  # inside one hidden dataset: nothing to show
            shown_edges.add(LineageEdge(
                source, target, e.type, e.subtype, "" if hidden else disp(e.job_ns, e.job_name),
                e.trusted, "" if hidden else e.producer))
        graph.edges = sorted(shown_edges)
        return graph

    @staticmethod
    def _matches(here: tuple[str, str, str], frontier: set[tuple[str, str, str | None]], *, up: bool) -> bool:
        ns, name, fld = here
        if (ns, name, None) in frontier:
            return True
        if up:
            # Upstream of a column: edges into that column and into the whole dataset.
            return fld == _WHOLE or (ns, name, fld) in frontier
        return (ns, name, fld) in frontier

    def _edges(self, table: sa.Table, side: str, datasets: set[tuple[str, str]],
               trusted_only: bool) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        items = sorted(datasets)
        with self.meta.connect() as conn:
            for i in range(0, len(items), _BATCH):
                chunk = items[i:i + _BATCH]
                names = sorted({n for _, n in chunk})
                q = sa.select(table).where(table.c[f"{side}_name"].in_(names))
                if trusted_only:
                    q = q.where(table.c.trusted == sa.true())
                for r in conn.execute(q).mappings():
                    if (r[f"{side}_namespace"], r[f"{side}_name"]) in datasets:
                        out.append(r)
        return out

    def datasets(self, *, visible: Visible | None = None) -> list[str]:
        """Every dataset in the lineage graph (those ``visible`` allows), sorted."""
        disp = self.identity.display
        out: set[str] = set()
        with self.meta.connect() as conn:
            for side in ("src", "dst"):
                q = sa.select(dataset_edges_table.c[f"{side}_namespace"],
                              dataset_edges_table.c[f"{side}_name"]).distinct()
                out.update(disp(a, b) for a, b in conn.execute(q))
        return sorted(d for d in out if visible is None or visible(d))

    def require(self, node: str) -> None:
        """Raise ``NotFound`` unless ``node``'s dataset is in the lineage graph."""
        ns, name, _ = self._parse(node)
        if not self._known_dataset(ns, name):
            raise NotFound(f"{node!r} is not in the lineage graph", node=node)


WITHHELD = "-- withheld: the statement names a dataset you cannot see"
"""The ``sql`` facet's query shown to a reader who may not see every table it names."""


@dataclass(frozen=True, slots=True)
class _Edge:
    src: tuple[str, str, str | None]
    dst: tuple[str, str, str | None]
    type: str
    subtype: str
    job_ns: str
    job_name: str
    trusted: bool
    producer: str


def job_namespace(event: Any) -> str:
    """The job namespace of an event (``InvalidInput`` when it has none)."""
    job = event.get("job") if isinstance(event, Mapping) else None
    ns = job.get("namespace") if isinstance(job, Mapping) else None
    if not isinstance(ns, str) or not ns.strip():
        raise InvalidInput("an OpenLineage event names its job's namespace (job.namespace)")
    return ns


def _check_depth(event: Mapping[str, Any]) -> None:
    stack: list[tuple[Any, int]] = [(event, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise InvalidInput(f"the event is nested deeper than {_MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)


def _check_sizes(event: Mapping[str, Any]) -> None:
    """Refuse names longer than the tables hold (a store error would lose the event's reason)."""
    checks: list[tuple[str, Any, str]] = [
        ("job.namespace", event["job"]["namespace"], "namespace"), ("job.name", event["job"]["name"], "name"),
        ("run.runId", event["run"]["runId"], "run"), ("eventTime", event.get("eventTime"), "time"),
        ("eventType", event.get("eventType") or "", "type"),
    ]
    for kind in ("inputs", "outputs"):
        for i, ds in enumerate(event.get(kind) or ()):
            checks += [(f"{kind}/{i}/namespace", ds.get("namespace"), "namespace"),
                       (f"{kind}/{i}/name", ds.get("name"), "name")]
            cl = (ds.get("facets") or {}).get("columnLineage") if kind == "outputs" else None
            if isinstance(cl, Mapping):
                if not _column_pairs_ok(cl):
                    raise InvalidInput(f"{kind}/{i}: the columnLineage facet's input fields need "
                                       "namespace, name and field as text")
                for dst_field, f, _ in _column_pairs(cl):
                    checks += [("columnLineage field", dst_field, "field"),
                               ("inputFields namespace", f["namespace"], "namespace"),
                               ("inputFields name", f["name"], "name"), ("inputFields field", f["field"], "field")]
    for where, value, kind in checks:
        if not isinstance(value, str):
            raise InvalidInput(f"{where} must be text")
        if len(value) > _LIMITS[kind]:
            raise InvalidInput(f"{where} is longer than {_LIMITS[kind]} characters")


def _column_pairs_ok(cl: Mapping[str, Any]) -> bool:
    fields = cl.get("fields") or {}
    if not isinstance(fields, Mapping):
        return False
    entries: list[Any] = []
    for spec in fields.values():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("inputFields") or [], list):
            return False
        entries += spec.get("inputFields") or []
    ds = cl.get("dataset") or []
    if not isinstance(ds, list):
        return False
    for f in entries + ds:
        if not isinstance(f, Mapping) or not all(isinstance(f.get(k), str) for k in ("namespace", "name", "field")):
            return False
        if not isinstance(f.get("transformations") or [], list) or not all(
                isinstance(t, Mapping) for t in f.get("transformations") or []):
            return False
    return True


def _column_pairs(cl: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(output field, input field, transformation) of a ``columnLineage`` facet; ``''`` as the
    output field for whole-dataset inputs."""
    if not _column_pairs_ok(cl):
        return
    pairs = [(name, f) for name, spec in (cl.get("fields") or {}).items()
             for f in (spec or {}).get("inputFields") or ()]
    pairs += [(_WHOLE, f) for f in cl.get("dataset") or ()]
    for dst_field, f in pairs:
        for t in f.get("transformations") or [{}]:
            yield dst_field, f, t


def _sql_tables(query: Any, dialect: Any) -> set[str]:
    """The tables a statement names (``store.table`` or bare names), CTE names excluded; a
    statement that does not parse names ``"?"`` (which nobody may see)."""
    import sqlglot
    from sqlglot import exp

    from headwater.lineage._sql import sql_dialect

    if not isinstance(query, str) or not query.strip() or query == WITHHELD:
        return set()
    try:
        trees = [t for t in sqlglot.parse(query, read=sql_dialect(dialect)) if t is not None]
    except Exception:  # noqa: BLE001 - unparsable: withhold rather than guess
        return {"?"}
    out: set[str] = set()
    for tree in trees:
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        for t in tree.find_all(exp.Table):
            if not t.name or (not t.db and t.name.lower() in ctes):
                continue
            out.add(".".join(p for p in (t.catalog, t.db, t.name) if p))
    return out


def _node_name(disp: Any, node: tuple[str, str, str | None]) -> str:
    ns, name, fld = node
    d = disp(ns, name)
    return d if fld is None else f"{d}.{fld}"
