"""One identity per dataset, whichever integration reported it.

Headwater names a dataset ``<store>.<table>``; in OpenLineage that is namespace
``headwater://<platform>`` and name ``<store>.<table>`` (:func:`dataset_identity`). Other
producers name the same table after its physical location (the Postgres integration says
namespace ``postgres://host:5432``, name ``db.schema.table``). :class:`IdentityMap` maps such
names to the Headwater identity — by exact alias, by a store's physical prefix, or through a
``symlinks`` facet that already names the Headwater identity — so the lineage graph has one node
per dataset. A rewritten dataset keeps its original name in a ``symlinks`` facet.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["IdentityMap", "dataset_identity", "postgres_identity"]

SCHEME = "headwater"


def dataset_identity(logical_name: str, *, platform: str = "default") -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of a Headwater dataset ``<store>.<table>``."""
    return f"{SCHEME}://{platform}", logical_name


def postgres_identity(dsn: str, schema: str, table: str) -> tuple[str, str]:
    """How OpenLineage's Postgres integrations name a table: ``postgres://host:port``,
    ``database.schema.table`` (from a libpq key=value or URL DSN; defaults as libpq's)."""
    host, port, db = _dsn_parts(dsn)
    return f"postgres://{host}:{port}", f"{db}.{schema}.{table}"


def _dsn_parts(dsn: str) -> tuple[str, int, str]:
    params: dict[str, str] = {}
    if "://" in dsn:
        u = urlsplit(dsn)
        if u.hostname:
            params["host"] = u.hostname
        if u.port:
            params["port"] = str(u.port)
        if u.path.strip("/"):
            params["dbname"] = unquote(u.path.strip("/"))
        if u.username:
            params["user"] = unquote(u.username)
    else:
        for part in dsn.split():
            if "=" in part:
                k, v = part.split("=", 1)
                params[k.strip()] = v.strip().strip("'")
    host = params.get("host", "localhost").split(",")[0]
    port = int(params.get("port", "5432").split(",")[0])
    db = params.get("dbname") or params.get("user") or "postgres"
    return host, port, db


class IdentityMap:
    """Aliases from other producers' dataset names to Headwater's, and the rewrite of events.

    Thread-safe; cheap to consult on every event.
    """

    def __init__(self, platform: str = "default") -> None:
        self.platform = platform
        self.namespace = dataset_identity("", platform=platform)[0]
        self._exact: dict[tuple[str, str], str] = {}
        self._prefixes: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"IdentityMap(platform={self.platform!r}, aliases={len(self._exact)}, stores={len(self._prefixes)})"

    def identity(self, logical_name: str) -> tuple[str, str]:
        """The Headwater ``(namespace, name)`` of ``<store>.<table>``."""
        return dataset_identity(logical_name, platform=self.platform)

    def add_alias(self, namespace: str, name: str, logical_name: str) -> None:
        """``(namespace, name)`` as reported elsewhere is the dataset ``logical_name``."""
        with self._lock:
            self._exact[(namespace, name)] = logical_name

    def add_store(self, store: str, namespace: str, prefix: str) -> None:
        """Every ``prefix + <table>`` in ``namespace`` is ``<store>.<table>``
        (``add_store("app", "postgres://db:5432", "test.public.")``)."""
        with self._lock:
            self._prefixes.append((namespace, prefix, store))

    def add_postgres_store(self, store: str, dsn: str, schema: str = "public") -> None:
        """Alias a Postgres store as OpenLineage's Postgres integrations name its tables."""
        ns, name = postgres_identity(dsn, schema, "")
        self.add_store(store, ns, name)

    def aliases(self) -> dict[tuple[str, str], str]:
        """The exact aliases known (``(namespace, name) -> <store>.<table>``)."""
        with self._lock:
            return dict(self._exact)

    def aliases_of(self, logical_name: str) -> list[tuple[str, str]]:
        """Other names known for ``logical_name`` (exact aliases and store prefixes)."""
        out = [k for k, v in self.aliases().items() if v == logical_name]
        store, _, table = logical_name.partition(".")
        for ns, prefix, s in list(self._prefixes):
            if s == store and table:
                out.append((ns, prefix + table))
        return sorted(set(out))

    def canonical(self, namespace: str, name: str,
                  facets: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """The one identity of a dataset reported as ``(namespace, name)``."""
        if namespace == self.namespace:
            return namespace, name
        with self._lock:
            logical = self._exact.get((namespace, name))
            if logical is None:
                for ns, prefix, store in self._prefixes:
                    rest = name[len(prefix):]
                    if ns == namespace and name.startswith(prefix) and rest and "." not in rest:
                        logical = f"{store}.{rest}"
                        break
        if logical is not None:
            return self.identity(logical)
        for ident in _symlinks(facets):
            if ident.get("namespace") == self.namespace and ident.get("name"):
                return self.namespace, ident["name"]
        return namespace, name

    def display(self, namespace: str, name: str) -> str:
        """``<store>.<table>`` for Headwater datasets, ``namespace/name`` for others."""
        return name if namespace == self.namespace else f"{namespace}/{name}"

    def normalise_event(self, event: Mapping[str, Any], *, producer: str) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
        """A copy of ``event`` with every dataset (inputs, outputs, column lineage inputs) under
        its one identity, and the rewrites made as ``(namespace, name, new_ns, new_name)``.

        A rewritten input or output keeps its reported name in a ``symlinks`` facet.
        """
        from headwater.lineage._events import facet

        out = copy.deepcopy(dict(event))
        rewrites: list[tuple[str, str, str, str]] = []
        cache: dict[tuple[str, str], tuple[str, str]] = {}

        def canon(ns: str, name: str, facets: Mapping[str, Any] | None) -> tuple[str, str]:
            key = (ns, name)
            if key not in cache:
                cache[key] = self.canonical(ns, name, facets)
                if cache[key] != key:
                    rewrites.append((ns, name, *cache[key]))
            return cache[key]

        for kind in ("inputs", "outputs"):
            for ds in out.get(kind) or ():
                if not isinstance(ds, dict) or "namespace" not in ds or "name" not in ds:
                    continue
                ns, name = canon(ds["namespace"], ds["name"], ds.get("facets"))
                if (ns, name) != (ds["namespace"], ds["name"]):
                    facets = ds.setdefault("facets", {})
                    links = facets.get("symlinks")
                    idents = list((links or {}).get("identifiers") or [])
                    if not any(i.get("namespace") == ds["namespace"] and i.get("name") == ds["name"] for i in idents):
                        idents.append({"namespace": ds["namespace"], "name": ds["name"], "type": "TABLE"})
                    facets["symlinks"] = (
                        {**links, "identifiers": idents} if links
                        else facet("symlinks", {"identifiers": idents}, producer=producer)
                    )
                    ds["namespace"], ds["name"] = ns, name
        for ds in out.get("outputs") or ():
            cl = ((ds.get("facets") or {}) if isinstance(ds, dict) else {}).get("columnLineage")
            if not isinstance(cl, dict):
                continue
            for entry in _input_fields(cl):
                if isinstance(entry, dict) and "namespace" in entry and "name" in entry:
                    entry["namespace"], entry["name"] = canon(entry["namespace"], entry["name"], None)
        return out, rewrites


def _symlinks(facets: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
    if not isinstance(facets, Mapping):
        return ()
    links = facets.get("symlinks")
    if not isinstance(links, Mapping):
        return ()
    return [i for i in links.get("identifiers") or () if isinstance(i, dict)]


def _input_fields(cl: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    for f in (cl.get("fields") or {}).values():
        if isinstance(f, dict):
            yield from f.get("inputFields") or ()
    yield from cl.get("dataset") or ()
