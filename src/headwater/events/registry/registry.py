"""The schema registry: subjects, versions, global schema ids, compatibility and PII checks.

Semantics follow Confluent Schema Registry so a REST layer can sit directly on top:

* A *schema* is identified by its type, canonical JSON text (keys sorted, no whitespace) and
  references. Registering the same schema under several subjects yields the same global id;
  ids are never reused, even after a permanent delete.
* Registering a schema already live in the subject returns its id without a new version. A
  schema that only matches a soft-deleted version gets a new version (with the same id).
* Compatibility is checked against live (not soft-deleted) versions, using the subject's mode,
  else the global mode, else ``BACKWARD``. Transitive modes check every live version.
* Deletes are soft first; a permanent delete of a version or subject that was not
  soft-deleted first raises :class:`NotSoftDeleted`. Version numbers continue from the
  highest version still stored for the subject.
* PII: a new version that *adds* a field whose name looks like personal data (see
  :func:`looks_like_pii`) without an ``x-pii`` classification is rejected
  (``pii_policy="reject"``), reported in :attr:`RegistrationResult.warnings` and logged on the
  ``headwater`` logger (``"warn"``, the default), or ignored (``"off"``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from headwater.errors import InvalidInput, StoreError, StoreUnavailable

from ._tables import config_table, schemas_table, versions_table
from .classify import declassified, field_paths, looks_like_pii
from .compat import (
    CompatibilityMode,
    CompatibilityResult,
    OpenContentPolicy,
    SchemaType,
    check_compatibility,
    load_schema,
)
from .errors import (
    IncompatibleSchema,
    InvalidSchema,
    NotSoftDeleted,
    SchemaNotFound,
    SubjectNotFound,
    UnclassifiedPII,
    VersionNotFound,
)

__all__ = [
    "PiiPolicy",
    "RegisteredSchema",
    "RegistrationResult",
    "SchemaReference",
    "SchemaRegistry",
    "SchemaVersion",
]

logger = logging.getLogger("headwater")

PiiPolicy = Literal["reject", "warn", "off"]
"""What registering unclassified PII-looking fields does; see the module docstring."""

_GLOBAL = ""
_MAX_RETRIES = 5


@dataclass(frozen=True)
class SchemaReference:
    """A reference from one schema to a version of another subject.

    ``name`` is how the referencing schema names it: the ``$ref`` URL (without fragment) for
    JSON Schema, any label for Avro (the referenced named types become available).
    """

    name: str
    subject: str
    version: int

    def to_dict(self) -> dict[str, Any]:
        """The Confluent JSON form ``{"name", "subject", "version"}``."""
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as stored under its global id."""

    id: int
    schema: str
    """Canonical JSON text."""
    schema_type: SchemaType
    references: tuple[SchemaReference, ...] = ()


@dataclass(frozen=True)
class SchemaVersion:
    """One version of a subject."""

    subject: str
    version: int
    id: int
    schema: str
    """Canonical JSON text."""
    schema_type: SchemaType
    references: tuple[SchemaReference, ...] = ()
    deleted: bool = False


@dataclass(frozen=True)
class RegistrationResult:
    """Outcome of :meth:`SchemaRegistry.register_detailed`."""

    id: int
    subject: str
    version: int
    created: bool
    """False when the schema was already live in the subject (idempotent re-registration)."""
    warnings: tuple[str, ...] = ()
    """PII warnings under ``pii_policy="warn"``."""


def _now() -> datetime:
    return datetime.now(UTC)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _fingerprint(stype: SchemaType, text: str, refs: Sequence[SchemaReference]) -> str:
    ref_text = _canonical([r.to_dict() for r in refs])
    return hashlib.sha256(f"{stype.value}\0{text}\0{ref_text}".encode()).hexdigest()


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1].replace("[]", "").replace("{}", "")


class SchemaRegistry:
    """A schema registry stored in SQLite or Postgres through a SQLAlchemy engine.

    The tables (:data:`headwater.events.registry._tables.METADATA`) must exist: create them
    with ``METADATA.create_all(engine)`` or the project's migrations, or pass
    ``create_tables=True``.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        pii_policy: PiiPolicy = "warn",
        open_content: OpenContentPolicy = "strict",
        default_compatibility: str | CompatibilityMode = CompatibilityMode.BACKWARD,
        create_tables: bool = False,
    ) -> None:
        if pii_policy not in ("reject", "warn", "off"):
            raise InvalidInput(f"pii_policy must be 'reject', 'warn' or 'off', not {pii_policy!r}")
        if open_content not in ("strict", "lenient"):
            raise InvalidInput(f"open_content must be 'strict' or 'lenient', not {open_content!r}")
        self.engine = engine
        self.pii_policy: PiiPolicy = pii_policy
        self.open_content: OpenContentPolicy = open_content
        self.default_compatibility = CompatibilityMode.of(default_compatibility)
        if create_tables:
            from ._tables import METADATA

            with self._tx() as conn:
                METADATA.create_all(conn)

    # -- plumbing ----------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """A transaction; driver errors are translated to Headwater's store errors."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as err:
            if isinstance(err, sa.exc.OperationalError) and "locked" in str(err.orig).lower():
                raise StoreUnavailable("schema registry database is locked; retry") from None
            raise StoreUnavailable(
                f"schema registry database unavailable: {type(err.orig).__name__}"
            ) from None
        except sa.exc.IntegrityError:
            raise  # callers retry races on unique keys
        except sa.exc.DBAPIError as err:
            raise StoreError(
                f"schema registry query failed: {type(err.orig).__name__}: {err.orig}"
            ) from None

    @staticmethod
    def _check_subject(subject: str) -> None:
        if not isinstance(subject, str) or not subject.strip() or len(subject) > 255:
            raise InvalidInput("subject must be a non-empty string of at most 255 characters")

    @staticmethod
    def _refs(
        references: Sequence[SchemaReference | Mapping[str, Any]] | None,
    ) -> tuple[SchemaReference, ...]:
        out = []
        for ref in references or ():
            if isinstance(ref, SchemaReference):
                out.append(ref)
            else:
                try:
                    out.append(
                        SchemaReference(str(ref["name"]), str(ref["subject"]), int(ref["version"]))
                    )
                except (KeyError, TypeError, ValueError):
                    raise InvalidSchema(
                        "a reference needs 'name', 'subject' and an integer 'version'"
                    ) from None
        return tuple(out)

    @staticmethod
    def _refs_from_row(raw: Any) -> tuple[SchemaReference, ...]:
        if isinstance(raw, str):
            raw = json.loads(raw)
        return tuple(SchemaReference(r["name"], r["subject"], int(r["version"])) for r in raw or [])

    def _version_row(
        self, conn: sa.Connection, subject: str, version: int | str, include_deleted: bool
    ) -> Any:
        v, s = versions_table.c, schemas_table.c
        query = (
            sa.select(
                v.subject, v.version, v.schema_id, v.deleted, s.schema_text, s.schema_type, s.refs
            )
            .join(schemas_table, s.id == v.schema_id)
            .where(v.subject == subject)
        )
        if not include_deleted:
            query = query.where(v.deleted.is_(False))
        if version in ("latest", -1):
            row = conn.execute(query.order_by(v.version.desc()).limit(1)).first()
            if row is None:
                raise SubjectNotFound(f"subject {subject!r} has no versions", subject=subject)
            return row
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"version must be a positive integer or 'latest', not {version!r}"
            ) from None
        row = conn.execute(query.where(v.version == number)).first()
        if row is None:
            exists = conn.execute(
                sa.select(sa.func.count())
                .select_from(versions_table)
                .where(v.subject == subject, *(() if include_deleted else (v.deleted.is_(False),)))
            ).scalar()
            if not exists:
                raise SubjectNotFound(f"subject {subject!r} not found", subject=subject)
            raise VersionNotFound(
                f"subject {subject!r} has no version {number}", subject=subject, version=number
            )
        return row

    @staticmethod
    def _to_version(row: Any) -> SchemaVersion:
        return SchemaVersion(
            subject=row.subject,
            version=row.version,
            id=row.schema_id,
            schema=row.schema_text,
            schema_type=SchemaType(row.schema_type),
            references=SchemaRegistry._refs_from_row(row.refs),
            deleted=bool(row.deleted),
        )

    def _resolve_refs(
        self, conn: sa.Connection, refs: Sequence[SchemaReference], depth: int = 0
    ) -> dict[str, Any]:
        """Reference name -> parsed schema, including the references' own references."""
        if depth > 32:
            raise InvalidSchema("schema references nest too deeply (cycle?)")
        out: dict[str, Any] = {}
        for ref in refs:
            try:
                row = self._version_row(conn, ref.subject, ref.version, include_deleted=False)
            except (SubjectNotFound, VersionNotFound):
                raise InvalidSchema(
                    f"reference {ref.name!r} points at {ref.subject!r} version {ref.version}, "
                    "which does not exist",
                    subject=ref.subject,
                    version=ref.version,
                ) from None
            out.update(self._resolve_refs(conn, self._refs_from_row(row.refs), depth + 1))
            out[ref.name] = json.loads(row.schema_text)
        return out

    def _latest_stored(self, conn: sa.Connection, subject: str) -> Any:
        """The subject's newest version, soft-deleted or not (None: it never had one)."""
        v, s = versions_table.c, schemas_table.c
        return conn.execute(
            sa.select(s.schema_text, s.schema_type).join(schemas_table, s.id == v.schema_id)
            .where(v.subject == subject).order_by(v.version.desc()).limit(1)
        ).first()

    def _live_versions(self, conn: sa.Connection, subject: str) -> list[Any]:
        v, s = versions_table.c, schemas_table.c
        return list(
            conn.execute(
                sa.select(
                    v.subject,
                    v.version,
                    v.schema_id,
                    v.deleted,
                    s.schema_text,
                    s.schema_type,
                    s.refs,
                )
                .join(schemas_table, s.id == v.schema_id)
                .where(v.subject == subject, v.deleted.is_(False))
                .order_by(v.version)
            )
        )

    # -- configuration -----------------------------------------------------------------------
    def get_config(
        self, subject: str | None = None, *, default_to_global: bool = True
    ) -> CompatibilityMode | None:
        """The compatibility mode of ``subject`` (or the global mode when ``subject`` is None).

        A subject without its own mode falls back to the global mode, then to the registry's
        default (``BACKWARD``); with ``default_to_global=False`` it returns None instead.
        """
        with self._tx() as conn:
            return self._config(conn, subject, default_to_global)

    def _config(
        self, conn: sa.Connection, subject: str | None, default_to_global: bool
    ) -> CompatibilityMode | None:
        c = config_table.c
        keys = [subject] if subject else []
        if default_to_global or not subject:
            keys.append(_GLOBAL)
        rows = {
            r.subject: r.compatibility
            for r in conn.execute(sa.select(c.subject, c.compatibility).where(c.subject.in_(keys)))
        }
        for key in keys:
            if key in rows:
                return CompatibilityMode(rows[key])
        if subject and not default_to_global:
            return None
        return self.default_compatibility

    def set_config(
        self, subject: str | None, compatibility: str | CompatibilityMode
    ) -> CompatibilityMode:
        """Set the mode of ``subject``, or the global mode when ``subject`` is None."""
        mode = CompatibilityMode.of(compatibility)
        key = _GLOBAL if subject is None else subject
        if subject is not None:
            self._check_subject(subject)
        for _ in range(_MAX_RETRIES):
            try:
                with self._tx() as conn:
                    updated = conn.execute(
                        config_table.update()
                        .where(config_table.c.subject == key)
                        .values(compatibility=mode.value, updated_at=_now())
                    ).rowcount
                    if not updated:
                        conn.execute(
                            config_table.insert().values(
                                subject=key, compatibility=mode.value, updated_at=_now()
                            )
                        )
                return mode
            except sa.exc.IntegrityError:
                continue
        raise StoreError("could not set the compatibility mode (concurrent updates)")

    def delete_config(self, subject: str | None) -> None:
        """Drop the subject's own mode (it falls back to the global one), or reset the global."""
        key = _GLOBAL if subject is None else subject
        with self._tx() as conn:
            conn.execute(config_table.delete().where(config_table.c.subject == key))

    # -- registration ------------------------------------------------------------------------
    def register(
        self,
        subject: str,
        schema: Any,
        schema_type: str | SchemaType = SchemaType.JSON,
        *,
        references: Sequence[SchemaReference | Mapping[str, Any]] | None = None,
    ) -> int:
        """Register ``schema`` under ``subject`` and return its global id.

        Idempotent; raises :class:`IncompatibleSchema` (with ``messages``) when the subject's
        compatibility mode forbids it, :class:`UnclassifiedPII` under ``pii_policy="reject"``
        and :class:`InvalidSchema` for schemas that do not parse.
        """
        return self.register_detailed(subject, schema, schema_type, references=references).id

    def register_detailed(
        self,
        subject: str,
        schema: Any,
        schema_type: str | SchemaType = SchemaType.JSON,
        *,
        references: Sequence[SchemaReference | Mapping[str, Any]] | None = None,
        on_declassify: Callable[[list[str]], None] | None = None,
    ) -> RegistrationResult:
        """Like :meth:`register`, returning the version and any PII warnings as well.

        ``on_declassify(weakened)`` is called inside the registration's transaction when the new
        version weakens the classification of the subject's latest version (see
        :func:`~headwater.events.registry.classify.declassified`); whatever it raises aborts the
        registration (nothing is stored)."""
        self._check_subject(subject)
        stype = SchemaType.of(schema_type)
        refs = self._refs(references)
        for attempt in range(_MAX_RETRIES):
            try:
                return self._register_once(subject, schema, stype, refs, on_declassify)
            except sa.exc.IntegrityError:
                if attempt == _MAX_RETRIES - 1:
                    raise StoreError(
                        f"could not register under {subject!r}: concurrent registrations",
                        subject=subject,
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _register_once(
        self, subject: str, schema: Any, stype: SchemaType, refs: tuple[SchemaReference, ...],
        on_declassify: Callable[[list[str]], None] | None = None,
    ) -> RegistrationResult:
        with self._tx() as conn:
            resolved = self._resolve_refs(conn, refs)
            obj = load_schema(schema, stype, resolved)
            text = _canonical(obj)
            fingerprint = _fingerprint(stype, text, refs)
            s, v = schemas_table.c, versions_table.c
            schema_id = conn.execute(sa.select(s.id).where(s.fingerprint == fingerprint)).scalar()

            live = self._live_versions(conn, subject)
            if schema_id is not None:
                for row in live:
                    if row.schema_id == schema_id:
                        return RegistrationResult(schema_id, subject, row.version, created=False)

            result = self._check_against(conn, subject, obj, stype, resolved, live, "auto")
            if not result.compatible:
                mode = self._config(conn, subject, True)
                raise IncompatibleSchema(
                    f"schema is incompatible with subject {subject!r} under {mode.value}: "
                    + "; ".join(result.messages),
                    subject=subject,
                    mode=mode.value if mode else None,
                    messages=result.messages,
                )

            warnings = self._pii(subject, obj, stype, live)
            if on_declassify is not None:
                previous = live[-1] if live else self._latest_stored(conn, subject)
                if previous is not None:
                    weakened = declassified(json.loads(previous.schema_text), SchemaType(previous.schema_type),
                                            obj, stype)
                    if weakened:
                        on_declassify(weakened)

            if schema_id is None:
                schema_id = conn.execute(
                    schemas_table.insert()
                    .values(
                        schema_type=stype.value,
                        fingerprint=fingerprint,
                        schema_text=text,
                        refs=[r.to_dict() for r in refs],
                        created_at=_now(),
                    )
                    .returning(s.id)
                ).scalar_one()
            last = conn.execute(
                sa.select(sa.func.max(v.version)).where(v.subject == subject)
            ).scalar()
            version = (last or 0) + 1
            conn.execute(
                versions_table.insert().values(
                    subject=subject,
                    version=version,
                    schema_id=schema_id,
                    deleted=False,
                    created_at=_now(),
                )
            )
            return RegistrationResult(schema_id, subject, version, created=True, warnings=warnings)

    def _pii(self, subject: str, obj: Any, stype: SchemaType, live: list[Any]) -> tuple[str, ...]:
        if self.pii_policy == "off":
            return ()
        before: set[str] = set()
        if live:
            latest = live[-1]
            before = set(
                field_paths(json.loads(latest.schema_text), SchemaType(latest.schema_type))
            )
        fields = field_paths(obj, stype)
        flagged = sorted(
            p
            for p, tag in fields.items()
            if p not in before and not tag and looks_like_pii(_leaf(p))
        )
        if not flagged:
            return ()
        if self.pii_policy == "reject":
            raise UnclassifiedPII(
                f"subject {subject!r}: new field(s) {', '.join(flagged)} look like personal data; "
                'classify them with "x-pii" (use "x-pii": "none" if they are not)',
                subject=subject,
                fields=tuple(flagged),
            )
        warnings = tuple(
            f'field {p!r} looks like personal data but has no "x-pii" classification'
            for p in flagged
        )
        for w in warnings:
            logger.warning("schema registry: subject %r: %s", subject, w)
        return warnings

    def _check_against(
        self,
        conn: sa.Connection,
        subject: str,
        obj: Any,
        stype: SchemaType,
        resolved: Mapping[str, Any],
        live: list[Any],
        which: str | int,
    ) -> CompatibilityResult:
        mode = self._config(conn, subject, True) or self.default_compatibility
        if mode is CompatibilityMode.NONE or not live:
            return CompatibilityResult(True)
        if which == "auto":
            targets = live if mode.transitive else live[-1:]
        elif which == "all":
            targets = live
        elif which == "latest":
            targets = live[-1:]
        else:
            targets = [r for r in live if r.version == int(which)]
            if not targets:
                raise VersionNotFound(
                    f"subject {subject!r} has no version {which}", subject=subject, version=which
                )
        messages: list[str] = []
        for row in targets:
            if SchemaType(row.schema_type) is not stype:
                messages.append(
                    f"version {row.version}: schema type changed from {row.schema_type} to {stype.value}"
                )
        if messages:
            return CompatibilityResult(False, tuple(messages))
        existing = {f"version {row.version}": json.loads(row.schema_text) for row in targets}
        existing_refs = {
            f"version {row.version}": self._resolve_refs(conn, self._refs_from_row(row.refs))
            for row in targets
        }
        # the mode's directions; which versions to compare with was decided above
        base = CompatibilityMode(mode.value.replace("_TRANSITIVE", ""))
        effective = (
            CompatibilityMode(f"{base.value}_TRANSITIVE")
            if base is not CompatibilityMode.NONE
            else base
        )
        return check_compatibility(
            obj,
            existing,
            schema_type=stype,
            mode=effective,
            open_content=self.open_content,
            new_references=resolved,
            existing_references=existing_refs,
        )

    def check(
        self,
        subject: str,
        schema: Any,
        schema_type: str | SchemaType | None = None,
        *,
        version: Literal["latest", "all"] | int = "latest",
        references: Sequence[SchemaReference | Mapping[str, Any]] | None = None,
    ) -> CompatibilityResult:
        """Test ``schema`` against the subject without registering it.

        ``version="latest"`` compares with the latest live version, ``"all"`` with every live
        version, an integer with that version; the directions come from the subject's mode.
        A subject without versions accepts anything. ``schema_type`` defaults to the type of
        the subject's latest version (JSON for a new subject).
        """
        self._check_subject(subject)
        refs = self._refs(references)
        with self._tx() as conn:
            live = self._live_versions(conn, subject)
            if schema_type is None:
                stype = SchemaType(live[-1].schema_type) if live else SchemaType.JSON
            else:
                stype = SchemaType.of(schema_type)
            resolved = self._resolve_refs(conn, refs)
            obj = load_schema(schema, stype, resolved)
            if version not in ("latest", "all"):
                try:
                    version = int(version)
                except (TypeError, ValueError):
                    raise InvalidInput(
                        f"version must be 'latest', 'all' or an integer, not {version!r}"
                    ) from None
            return self._check_against(conn, subject, obj, stype, resolved, live, version)

    # -- reads -------------------------------------------------------------------------------
    def get_by_id(self, schema_id: int) -> RegisteredSchema:
        """The schema with global id ``schema_id`` (also after its versions were deleted)."""
        s = schemas_table.c
        with self._tx() as conn:
            row = conn.execute(
                sa.select(s.id, s.schema_text, s.schema_type, s.refs).where(s.id == int(schema_id))
            ).first()
        if row is None:
            raise SchemaNotFound(f"no schema has id {schema_id}", schema_id=schema_id)
        return RegisteredSchema(
            row.id, row.schema_text, SchemaType(row.schema_type), self._refs_from_row(row.refs)
        )

    def subject_versions_by_id(
        self, schema_id: int, *, include_deleted: bool = False
    ) -> list[tuple[str, int]]:
        """Every (subject, version) that uses schema ``schema_id``."""
        v = versions_table.c
        query = sa.select(v.subject, v.version).where(v.schema_id == int(schema_id))
        if not include_deleted:
            query = query.where(v.deleted.is_(False))
        with self._tx() as conn:
            return [
                (r.subject, r.version) for r in conn.execute(query.order_by(v.subject, v.version))
            ]

    def get_version(
        self,
        subject: str,
        version: int | Literal["latest"] = "latest",
        *,
        include_deleted: bool = False,
    ) -> SchemaVersion:
        """One version of ``subject`` (``"latest"``: the highest live version)."""
        with self._tx() as conn:
            return self._to_version(self._version_row(conn, subject, version, include_deleted))

    def lookup(
        self,
        subject: str,
        schema: Any,
        schema_type: str | SchemaType | None = None,
        *,
        references: Sequence[SchemaReference | Mapping[str, Any]] | None = None,
        include_deleted: bool = False,
    ) -> SchemaVersion:
        """The version of ``subject`` holding ``schema`` (compared in canonical form).

        Raises :class:`SubjectNotFound` or :class:`SchemaNotFound`.
        """
        refs = self._refs(references)
        v, s = versions_table.c, schemas_table.c
        with self._tx() as conn:
            query = (
                sa.select(
                    v.subject,
                    v.version,
                    v.schema_id,
                    v.deleted,
                    s.schema_text,
                    s.schema_type,
                    s.refs,
                )
                .join(schemas_table, s.id == v.schema_id)
                .where(v.subject == subject)
                .order_by(v.version)
            )
            if not include_deleted:
                query = query.where(v.deleted.is_(False))
            rows = list(conn.execute(query))
            if not rows:
                raise SubjectNotFound(f"subject {subject!r} not found", subject=subject)
            stype = (
                SchemaType.of(schema_type)
                if schema_type is not None
                else SchemaType(rows[-1].schema_type)
            )
            obj = load_schema(schema, stype, self._resolve_refs(conn, refs))
            fingerprint = _fingerprint(stype, _canonical(obj), refs)
            schema_id = conn.execute(sa.select(s.id).where(s.fingerprint == fingerprint)).scalar()
        for row in rows:
            if row.schema_id == schema_id:
                return self._to_version(row)
        raise SchemaNotFound(f"schema is not registered under subject {subject!r}", subject=subject)

    def subjects(self, *, include_deleted: bool = False) -> list[str]:
        """Subjects with at least one live version (any version with ``include_deleted``)."""
        v = versions_table.c
        query = sa.select(v.subject).distinct()
        if not include_deleted:
            query = query.where(v.deleted.is_(False))
        with self._tx() as conn:
            return sorted(r.subject for r in conn.execute(query))

    def versions(self, subject: str, *, include_deleted: bool = False) -> list[int]:
        """Version numbers of ``subject``, ascending; :class:`SubjectNotFound` if none."""
        v = versions_table.c
        query = sa.select(v.version).where(v.subject == subject)
        if not include_deleted:
            query = query.where(v.deleted.is_(False))
        with self._tx() as conn:
            numbers = [r.version for r in conn.execute(query.order_by(v.version))]
        if not numbers:
            raise SubjectNotFound(f"subject {subject!r} not found", subject=subject)
        return numbers

    # -- deletes -----------------------------------------------------------------------------
    def delete_version(
        self, subject: str, version: int | Literal["latest"], *, permanent: bool = False
    ) -> int:
        """Soft-delete a version, or permanently delete an already soft-deleted one.

        Returns the version number. The schema itself (and its id) stays retrievable with
        :meth:`get_by_id`.
        """
        v = versions_table.c
        with self._tx() as conn:
            if not permanent:
                row = self._version_row(conn, subject, version, include_deleted=False)
                conn.execute(
                    versions_table.update()
                    .where(v.subject == subject, v.version == row.version)
                    .values(deleted=True)
                )
                return row.version
            row = self._version_row(conn, subject, version, include_deleted=True)
            if not row.deleted:
                raise NotSoftDeleted(
                    f"version {row.version} of {subject!r} must be soft-deleted before it is "
                    "permanently deleted",
                    subject=subject,
                    version=row.version,
                )
            conn.execute(
                versions_table.delete().where(v.subject == subject, v.version == row.version)
            )
            return row.version

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Soft-delete every live version of ``subject``, or permanently remove a subject
        whose versions are all soft-deleted (and its compatibility mode). Returns the
        version numbers deleted."""
        v = versions_table.c
        with self._tx() as conn:
            rows = list(
                conn.execute(
                    sa.select(v.version, v.deleted).where(v.subject == subject).order_by(v.version)
                )
            )
            live = [r.version for r in rows if not r.deleted]
            if not permanent:
                if not live:
                    raise SubjectNotFound(f"subject {subject!r} not found", subject=subject)
                conn.execute(
                    versions_table.update().where(v.subject == subject).values(deleted=True)
                )
                return live
            if not rows:
                raise SubjectNotFound(f"subject {subject!r} not found", subject=subject)
            if live:
                raise NotSoftDeleted(
                    f"subject {subject!r} must be soft-deleted before it is permanently deleted",
                    subject=subject,
                )
            conn.execute(versions_table.delete().where(v.subject == subject))
            conn.execute(config_table.delete().where(config_table.c.subject == subject))
            return [r.version for r in rows]
