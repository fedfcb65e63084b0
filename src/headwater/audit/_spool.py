"""The local audit spool: one append-only file per process, the durability point of a record.

An entry is one line ``<n> <ts_us> <body>`` where ``body`` is the record's canonical JSON
without its chain fields (:func:`headwater.audit._model.body`) and ``n`` counts the file's
entries from 1. ``os.write`` to a file opened with ``O_APPEND`` puts the line in the operating
system's page cache before the audited call returns, so it survives the process being killed
(the same guarantee the SQLite metadata store gives with ``synchronous=NORMAL``). With
``sync=True`` every entry is also ``fdatasync``-ed (and a new file's directory entry ``fsync``-ed)
before the call returns, so it survives a power loss or an operating-system crash too.

The owning process holds an exclusive ``flock`` on its file while it lives. A file whose lock
can be taken belongs to a process that died: :func:`orphans` hands it out, still locked, so
exactly one process recovers it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Spool", "orphans", "read_entries"]

SUFFIX = ".spool"
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
_NEW = ".new"  # a spool file being created: not yet locked, never recovered
_ABANDONED_S = 60.0


class Spool:
    """This process's spool file in ``directory`` (created on the first write); ``sync``
    flushes every entry to stable storage before :meth:`write` returns."""

    def __init__(self, directory: Path, *, sync: bool = False) -> None:
        self.directory = directory
        self.sync = sync
        self.name: str | None = None
        """The file's name (also its key in ``hw_audit_spool``)."""
        self.written = 0
        """Entries written to the current file."""
        self._fd: int | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"Spool(directory={str(self.directory)!r}, name={self.name!r}, written={self.written})"

    def write(self, ts_us: int, body: str) -> tuple[str, int]:
        """Append one entry (the caller serialises calls); returns (file name, entry number)."""
        if self._fd is None or self._pid != os.getpid():
            self._open()
        self.written += 1
        line = f"{self.written} {ts_us} {body}\n".encode()
        if os.write(self._fd, line) != len(line):  # type: ignore[arg-type]
            raise OSError("short write to the audit spool")
        if self.sync:
            _datasync(self._fd)  # type: ignore[arg-type]
        return self.name, self.written  # type: ignore[return-value]

    def _open(self) -> None:
        # Created under a name orphans() does not list, locked, then renamed (the lock stays
        # with the open file): recovery (another process's, or another log's in this one)
        # never sees the file unlocked, so never takes it for a dead process's.
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
        tmp = self.directory / f"{name}{_NEW}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, self.directory / name)
            if self.sync:  # the file's name must outlive a power loss as well as its lines
                _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fd, self._pid, self.name, self.written = fd, os.getpid(), name, 0

    def owns(self, name: str) -> bool:
        return self._fd is not None and self._pid == os.getpid() and name == self.name

    def discard(self) -> str | None:
        """Close and delete this process's file (every entry must be committed); returns its name."""
        if self._fd is None or self._pid != os.getpid():
            self._fd = None
            return None
        name, fd = self.name, self._fd
        self._fd, self.name, self.written = None, None, 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / name)  # type: ignore[operator]
        os.close(fd)
        return name


def orphans(directory: Path, spool: Spool) -> Iterator[tuple[str, Path]]:
    """Spool files of dead processes, each yielded while this process holds its lock."""
    try:
        listing = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in listing:
        if name.endswith(SUFFIX + _NEW):
            _drop_abandoned(directory / name)
    names = sorted(n for n in listing if n.endswith(SUFFIX))
    for name in names:
        if spool.owns(name):
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            if os.path.exists(path):  # not recovered and removed by another process meanwhile
                yield name, path
        finally:
            os.close(fd)


def _drop_abandoned(path: Path) -> None:
    """Delete an empty file its creator left before renaming it (killed inside
    ``Spool._open``). Nothing locks these files; a creator renames its file microseconds after
    creating it, so only files older than :data:`_ABANDONED_S` are taken for abandoned."""
    with contextlib.suppress(FileNotFoundError):
        st = path.stat()
        if st.st_size == 0 and time.time() - st.st_mtime > _ABANDONED_S:
            path.unlink()


def read_entries(path: Path, after: int) -> list[tuple[int, int, str]]:
    """The complete entries of a spool file numbered above ``after``: (n, ts_us, body).

    A last line without its newline was cut by a crash inside ``write``: the call it belongs
    to never returned, so it is not an acknowledged record and is skipped.
    """
    data = path.read_bytes().decode("ascii", errors="replace")
    out = []
    for line in data.split("\n")[:-1]:
        n_text, ts_text, body = line.split(" ", 2)
        n = int(n_text)
        if n > after:
            out.append((n, int(ts_text), body))
    return out


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
