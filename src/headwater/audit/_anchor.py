"""The audit head's anchor outside the metadata database: cutting records off is detected.

The chain head in the metadata database is signed, but a signed head stays valid forever: an
insider who can write that database can delete the newest records and put back an older
signed head (and its checkpoints), and the chain verifies. The anchor closes that hole. It
holds the highest (seq, hash) ever committed, signed with the audit key (kind
``head-anchor``), somewhere the metadata database's writers cannot reach, and it only moves
forward:

* :class:`FileAnchor`: a JSON file (``<platform_dir>/audit-anchor.json`` by default), replaced
  atomically (write a temporary file, rename it) under an exclusive ``flock`` on a lock file
  beside it, so appending processes on one host can never move it back.
* :class:`S3Anchor`: one object in a bucket, replaced by conditional PUTs (``If-Match`` on the
  ETag read, ``If-None-Match: *`` for the first), so processes on many hosts can never move it
  back; in a versioned bucket with Object Lock every version is kept, and verification takes
  the highest seq of the newest versions, so putting an old (validly signed) anchor back as a
  new version does not hide the cut either. Writes happen on a background thread that only
  ever sends the newest pending head (nothing waits for S3 on the query path).

Every committing process advances the anchor after its commit (what it committed, never
what it reads, so a rolled-back database cannot launder itself into the anchor).
:meth:`AuditLog.verify <headwater.audit.AuditLog.verify>` reads the anchor first, then the
database snapshot, and fails when the snapshot's head is behind the anchor or does not hold
the anchored record (``rolled_back``), when the anchor does not verify, or when records exist
but no anchor does.

What it cannot show: someone who can write the anchor's location *and* the database can cut
both back together to an older signed state (for the file anchor: a copy of an older file);
Object Lock plus bucket permissions that the metadata database's writers do not hold are the
production answer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from headwater.audit._model import sign, signed
from headwater.errors import AuditIntegrityError, MissingDependency, StoreUnavailable

__all__ = ["PRUNED", "AnchorState", "FileAnchor", "HeadAnchor", "Lookup", "S3Anchor"]

log = logging.getLogger("headwater.audit")

KIND = "head-anchor"
"""Signature kind: an anchor's signature cannot stand in for a head, checkpoint or retention one."""


@dataclass(frozen=True, slots=True)
class AnchorState:
    """The highest (seq, hash) of the chain known to have been committed, signed."""

    seq: int
    hash: str
    sig: str
    ts_us: int = 0


class HeadAnchor(Protocol):
    """Where the audit head is anchored outside the metadata database."""

    where: str
    """Where the anchor lives (a path or ``s3://bucket/key``), for messages."""

    def read(self) -> AnchorState | None:
        """The anchored head (None when there is no anchor yet). Raises
        :class:`AuditIntegrityError` when it does not verify, ``StoreUnavailable`` when it
        cannot be read."""
        ...

    def highest(self) -> AnchorState | None:
        """What verification compares with: :meth:`read`, or more where the anchor keeps a
        history (the highest of an S3 object's newest versions)."""
        ...

    def advance(self, seq: int, hash_: str, base_seq: int, base_hash: str, lookup: Lookup) -> None:
        """Record that records ``base_seq + 1 .. seq`` were committed on top of the head
        (``base_seq``, ``base_hash``), the last with ``hash_``. Never moves the anchor back, and
        never forward over a chain that no longer holds the anchored record (``lookup(seq)``
        gives a stored record's hash). Errors are logged, not raised: the records are
        committed."""
        ...

    def start(self, seq: int, hash_: str) -> None:
        """Create the anchor at (seq, hash) now, unless one exists (synchronous: called inside
        the append transaction that holds the chain head, so no other process appends meanwhile)."""
        ...

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every advance so far has reached the anchor (best effort)."""
        ...

    def close(self) -> None:
        """Flush and release what the anchor holds (it stays usable)."""
        ...


Lookup = Callable[[int], "str | None"]
"""The hash of the stored record at a seq (``PRUNED`` behind retention, None when missing)."""

PRUNED = "pruned"


def _continues(where: str, current: AnchorState, base_seq: int, base_hash: str, lookup: Lookup) -> bool:
    """Whether the chain just extended still holds the anchored record.

    Without this check a rolled-back log would launder itself: once appends passed the cut-off
    seq again, the anchor would move onto the rewritten chain and verification would pass.
    """
    if current.seq == 0:
        return True
    stored = base_hash if current.seq == base_seq else lookup(current.seq)
    if stored == PRUNED or stored == current.hash:
        return True
    log.error("audit anchor %s not advanced: the chain no longer holds the anchored record %d "
              "(records were cut off and written again); run `headwater audit verify`", where, current.seq)
    return False


def _encode(state: AnchorState) -> bytes:
    return json.dumps({"v": 1, "seq": state.seq, "hash": state.hash, "sig": state.sig, "ts_us": state.ts_us},
                      separators=(",", ":"), sort_keys=True).encode()


def _decode(data: bytes, key: bytes, where: str) -> AnchorState:
    try:
        doc = json.loads(data)
        state = AnchorState(seq=doc["seq"], hash=doc["hash"], sig=doc["sig"], ts_us=doc.get("ts_us") or 0)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise AuditIntegrityError(f"the audit anchor at {where} is unreadable (tampered or truncated)",
                                  anchor=where) from None
    if not (isinstance(state.seq, int) and state.seq >= 0 and isinstance(state.hash, str)
            and isinstance(state.sig, str) and signed(key, KIND, state.seq, state.hash, state.sig)):
        raise AuditIntegrityError(f"the audit anchor at {where} does not verify (tampered, or signed with "
                                  "another key)", anchor=where)
    return state


def _new_state(key: bytes, seq: int, hash_: str) -> AnchorState:
    return AnchorState(seq, hash_, sign(key, KIND, seq, hash_), time.time_ns() // 1000)


class FileAnchor:
    """The anchor as a file on the local filesystem (see the module docstring).

    ``sync`` flushes the file and its directory to stable storage on every advance (use it with
    ``audit.durability: fsync``).
    """

    def __init__(self, path: str | Path, key: bytes, *, sync: bool = False) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self._key = bytes(key)
        self.sync = sync
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._lock_pid = 0
        self._written = -1  # the highest seq this process has seen in the anchor

    def __repr__(self) -> str:
        return f"FileAnchor(path={self.where!r})"

    def highest(self) -> AnchorState | None:
        """The file keeps no history: :meth:`read`."""
        return self.read()

    def read(self) -> AnchorState | None:
        """The anchored head, or None when the file does not exist."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreUnavailable(f"audit anchor {self.where} cannot be read: {err.strerror or err}") from None
        return _decode(data, self._key, self.where)

    @contextlib.contextmanager
    def _locked(self) -> Any:
        with self._lock:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: one process per platform
                yield
                return
            if self._lock_fd is None or self._lock_pid != os.getpid():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                self._lock_pid = os.getpid()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def advance(self, seq: int, hash_: str, base_seq: int, base_hash: str, lookup: Lookup) -> None:
        """Replace the anchor with (seq, hash) unless it already holds this seq or a later one
        (or the chain no longer holds the anchored record)."""
        if seq <= self._written:
            return  # someone already anchored as far: no lock, no I/O
        try:
            with self._locked():
                current = self.read()
                if current is not None and current.seq >= seq:
                    self._written = current.seq
                    return
                if current is not None and not _continues(self.where, current, base_seq, base_hash, lookup):
                    return
                if current is None and base_seq > 0:
                    log.warning("audit anchor %s was missing; it restarts at seq %d", self.where, seq)
                self._write(_new_state(self._key, seq, hash_))
                self._written = seq
        except AuditIntegrityError as err:
            # Left as it is: it is the evidence, and verify reports it.
            log.error("audit anchor not advanced: %s", err)
        except (OSError, StoreUnavailable) as err:
            log.warning("audit anchor %s not advanced to seq %d: %s", self.where, seq, err)

    def start(self, seq: int, hash_: str) -> None:
        """Write (seq, hash) when there is no anchor file yet."""
        with self._locked():
            if not self.path.exists():
                self._write(_new_state(self._key, seq, hash_))

    def _write(self, state: AnchorState) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, _encode(state))
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if self.sync:
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def flush(self, timeout: float = 30.0) -> None:
        """Nothing is pending: a file anchor advances before :meth:`advance` returns."""

    def close(self) -> None:
        """Close the lock file."""
        with self._lock:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None and self._lock_pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.close(fd)


class S3Anchor:
    """The anchor as one S3 object (see the module docstring).

    ``client`` is a boto3 S3 client or a callable returning one (made on first use).
    ``retain_days`` puts each version under Object Lock retention (``lock_mode`` GOVERNANCE or
    COMPLIANCE) when the bucket has Object Lock enabled. ``versions_checked`` newest versions
    are read by :meth:`read` (their highest seq counts).
    """

    def __init__(self, bucket: str, key: str, signing_key: bytes, *, client: Any,
                 retain_days: int | None = None, lock_mode: str = "GOVERNANCE", versions_checked: int = 16) -> None:
        self.bucket = bucket
        self.key = key
        self.where = f"s3://{bucket}/{key}"
        self._key = bytes(signing_key)
        self._client_arg = client
        self._client: Any = None
        self.retain_days = retain_days
        self.lock_mode = lock_mode
        self.versions_checked = versions_checked
        self._cv = threading.Condition()
        self._pending: tuple[int, str, int, str, Lookup] | None = None
        self._busy = False
        self._thread: threading.Thread | None = None
        self._thread_pid = 0
        self._written = -1

    def __repr__(self) -> str:
        return f"S3Anchor(where={self.where!r})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client."""
        if self._client is None:
            self._client = self._client_arg() if callable(self._client_arg) else self._client_arg
        return self._client

    def _error_code(self, err: Exception) -> str:
        response = getattr(err, "response", None) or {}
        return str((response.get("Error") or {}).get("Code") or "")

    def _get(self, version: str | None = None) -> tuple[bytes, str] | None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if version is not None:
            kwargs["VersionId"] = version
        try:
            obj = self.client.get_object(**kwargs)
        except Exception as err:  # noqa: BLE001 - botocore errors, translated here
            if self._error_code(err) in ("NoSuchKey", "404", "NoSuchVersion"):
                return None
            raise StoreUnavailable(f"audit anchor {self.where} cannot be read: {type(err).__name__} "
                                   f"{self._error_code(err)}".strip()) from None
        return obj["Body"].read(), obj.get("ETag", "")

    def current(self) -> tuple[AnchorState | None, str | None]:
        """The current version's state and ETag (``(None, None)`` without one)."""
        got = self._get()
        if got is None:
            return None, None
        data, etag = got
        return _decode(data, self._key, self.where), etag

    def read(self) -> AnchorState | None:
        """The current object's anchored head (None without one)."""
        return self.current()[0]

    def highest(self) -> AnchorState | None:
        """The highest anchored head among the current object and its newest versions
        (a deleted current object still leaves its versions)."""
        try:
            listing = self.client.list_object_versions(Bucket=self.bucket, Prefix=self.key,
                                                       MaxKeys=self.versions_checked)
        except Exception as err:  # noqa: BLE001
            if self._error_code(err) in ("NotImplemented", "AccessDenied"):
                state, _ = self.current()
                return state
            raise StoreUnavailable(f"audit anchor {self.where} cannot be listed: {type(err).__name__}") from None
        versions = [v for v in listing.get("Versions", []) if v.get("Key") == self.key]
        versions.sort(key=lambda v: v.get("LastModified") or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)
        best: AnchorState | None = None
        for v in versions[: self.versions_checked]:
            version = v.get("VersionId")
            got = self._get(None if version in (None, "null") else version)
            if got is None:
                continue
            state = _decode(got[0], self._key, self.where)
            if best is None or state.seq > best.seq:
                best = state
        if best is None and not versions:
            best, _ = self.current()
        return best

    def advance(self, seq: int, hash_: str, base_seq: int, base_hash: str, lookup: Lookup) -> None:
        """Queue (seq, hash) for the writer thread (only the newest pending head is sent)."""
        if seq <= self._written:
            return
        with self._cv:
            pending = self._pending
            if pending is None:
                self._pending = (seq, hash_, base_seq, base_hash, lookup)
            elif seq > pending[0]:
                # keep the lowest base: the anchor most likely still holds it
                base = (pending[2], pending[3]) if pending[2] <= base_seq else (base_seq, base_hash)
                self._pending = (seq, hash_, *base, lookup)
            if self._thread is None or self._thread_pid != os.getpid() or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="headwater-audit-anchor", daemon=True)
                self._thread_pid = os.getpid()
                self._thread.start()
            self._cv.notify_all()

    def _run(self) -> None:
        backoff = 0.1
        while True:
            with self._cv:
                if self._pending is None:
                    if not self._cv.wait(2.0) and self._pending is None:
                        if self._thread is threading.current_thread():
                            self._thread = None
                        self._cv.notify_all()
                        return
                    continue
                item, self._pending = self._pending, None
                self._busy = True
            try:
                self._put(*item)
                backoff = 0.1
            except Exception as err:  # noqa: BLE001 - logged and retried, never raised into appends
                log.warning("audit anchor %s not advanced to seq %d: %s", self.where, item[0], err)
                with self._cv:
                    if self._pending is None:
                        self._pending = item
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def start(self, seq: int, hash_: str) -> None:
        """Put (seq, hash) when there is no anchor object yet (``If-None-Match: *``)."""
        kwargs = self._put_args(seq, hash_)
        try:
            self.client.put_object(IfNoneMatch="*", **kwargs)
        except Exception as err:  # noqa: BLE001
            if self._error_code(err) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise StoreUnavailable(f"audit anchor {self.where} cannot be written: {type(err).__name__} "
                                       f"{self._error_code(err)}".strip()) from None

    def _put_args(self, seq: int, hash_: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key,
                                  "Body": _encode(_new_state(self._key, seq, hash_)),
                                  "ContentType": "application/json"}
        if self.retain_days:
            kwargs["ObjectLockMode"] = self.lock_mode
            kwargs["ObjectLockRetainUntilDate"] = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.retain_days)
        return kwargs

    def _put(self, seq: int, hash_: str, base_seq: int, base_hash: str, lookup: Lookup) -> None:
        for _ in range(32):
            try:
                current, etag = self.current()
            except AuditIntegrityError as err:
                log.error("audit anchor not advanced: %s", err)  # left as evidence for verify
                return
            if current is not None and current.seq >= seq:
                self._written = max(self._written, current.seq)
                return
            if current is not None and not _continues(self.where, current, base_seq, base_hash, lookup):
                return
            if current is None and base_seq > 0:
                log.warning("audit anchor %s was missing; it restarts at seq %d", self.where, seq)
            kwargs = self._put_args(seq, hash_)
            if etag:
                kwargs["IfMatch"] = etag
            else:
                kwargs["IfNoneMatch"] = "*"
            try:
                self.client.put_object(**kwargs)
            except Exception as err:  # noqa: BLE001
                if self._error_code(err) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    continue  # another process moved it meanwhile: read again
                raise
            self._written = seq
            return
        raise StoreUnavailable(f"audit anchor {self.where}: too many concurrent updates")

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the pending head is written (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while (self._pending is not None or self._busy) and self._thread is not None \
                    and self._thread_pid == os.getpid() and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("audit anchor %s: a pending head was not written in time", self.where)
                    return
                self._cv.wait(min(left, 0.1))

    def close(self) -> None:
        """Write the pending head (the thread ends by itself when idle)."""
        self.flush()


def s3_client(endpoint_url: str | None, region: str, access_key_id: str | None,
              secret_access_key: str | None) -> Any:
    """A boto3 S3 client (``MissingDependency`` naming the extra when boto3 is absent)."""
    try:
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise MissingDependency("the S3 audit anchor needs boto3: pip install 'headwater[s3]'") from None
    kwargs: dict[str, Any] = {"region_name": region,
                              "config": BotoConfig(retries={"max_attempts": 3}, connect_timeout=5, read_timeout=15)}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if access_key_id is not None:
        kwargs["aws_access_key_id"] = access_key_id
    if secret_access_key is not None:
        kwargs["aws_secret_access_key"] = secret_access_key
    return boto3.client("s3", **kwargs)
