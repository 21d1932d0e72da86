"""A process's write-ahead file for events on their way to the event stream.

A request that must not be answered before its event is safe used to wait for a Redis round
trip. Here it appends the event to a file of its own process instead, through a shared
memory map of it: a copy into the page cache, which outlives the process (a SIGKILL loses
nothing that was copied; a crash of the machine loses what Redis's own ``appendfsync
everysec`` would). No system call, so the thread keeps the GIL: under load every call
that releases it hands it to another thread and back, which cost more than the write.
Space is reserved when a file is made (``posix_fallocate``): a full disk is an error then,
never a SIGBUS on a later copy. Past what was written a file holds zeroes. A shipping thread
moves the events to the stream in batches (``api.serving.shipper``), and the stream's
consumer lands them as before.

The file is one event per line, ``table<TAB>json``. Its owner holds an exclusive ``flock``
on it while it lives; a file whose lock can be taken belongs to a dead process, and
:func:`orphans` hands it to whoever takes it, to ship the lines past the offset its owner
last recorded as shipped. Lines are shipped together with that offset in one atomic step,
so a line is shipped once (and the ingest drops a repeat by its row id anyway).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SUFFIX = ".spool"
ROTATE_BYTES = 32 * 1024 * 1024  # bytes reserved per file; a full one is replaced


@dataclass
class Batch:
    """Events taken for shipping: their lines, from file offset ``start`` to ``end``."""

    spool_id: str
    lines: list[bytes]
    start: int
    end: int


@dataclass
class _File:
    spool_id: str
    path: Path
    fd: int
    mm: mmap.mmap  # the whole file, mapped for writing
    size: int = 0  # bytes written
    taken: int = 0  # bytes handed to the shipper
    pending: list[bytes] = field(default_factory=list)  # lines from `taken` to `size`

    @property
    def shipped(self) -> bool:
        """Everything written was handed over (and the shipper says when it landed)."""
        return not self.pending and self.taken == self.size

    def remove(self) -> None:
        self.mm.close()
        _remove(self.path, self.fd)


@dataclass
class Spool:
    """This process's spool files under ``directory`` (the first opened on first use)."""

    directory: Path
    rotate_bytes: int = ROTATE_BYTES
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _files: list[_File] = field(default_factory=list)  # oldest first; the last is written

    def append(self, data: bytes, lines: list[bytes]) -> None:
        """Write ``data`` (``lines`` joined) where it outlives this process."""
        with self._lock:
            f = self._current(len(data))
            end = f.size + len(data)
            f.mm[f.size:end] = data  # a copy into the page cache: no system call, no GIL
            f.size = end
            f.pending += lines

    def take(self, limit: int) -> Batch | None:
        """The oldest events not yet handed to the shipper (at most ``limit``, from one
        file), or None."""
        with self._lock:
            for f in self._files:
                if f.pending:
                    lines, f.pending = f.pending[:limit], f.pending[limit:]
                    start = f.taken
                    f.taken += sum(len(line) for line in lines)
                    return Batch(f.spool_id, lines, start, f.taken)
            return None

    def untake(self, batch: Batch) -> None:
        """Put back a batch that could not be shipped (it goes first next time)."""
        with self._lock:
            for f in self._files:
                if f.spool_id == batch.spool_id:
                    f.pending = batch.lines + f.pending
                    f.taken = batch.start

    def drop_shipped(self, current: bool = False) -> list[str]:
        """Delete the files with nothing left to ship (after a batch landed: the replaced
        ones; at exit, ``current`` too); their ids."""
        with self._lock:
            done = [f for f in (self._files if current else self._files[:-1]) if f.shipped]
            for f in done:
                self._files.remove(f)
                f.remove()
        return [f.spool_id for f in done]

    def abandon(self) -> None:
        """In a forked child: the parent's files are the parent's (close our copies only)."""
        for f in self._files:
            f.mm.close()
            os.close(f.fd)
        self._files, self._lock = [], threading.Lock()

    def backlog(self) -> int:
        """Events written and not yet handed to the shipper."""
        with self._lock:
            return sum(len(f.pending) for f in self._files)

    def _current(self, need: int) -> _File:
        if self._files and self._files[-1].size + need <= len(self._files[-1].mm):
            return self._files[-1]
        self.directory.mkdir(parents=True, exist_ok=True)
        spool_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path = self.directory / f"{spool_id}{SUFFIX}"
        making = path.with_suffix(".new")  # locked before a sibling could see it as orphan
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours alone while we live
            size = max(self.rotate_bytes, need)
            # Reserved now: a full disk is an OSError here, not a SIGBUS on a later write.
            os.posix_fallocate(fd, 0, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            os.rename(making, path)
        except BaseException:
            making.unlink(missing_ok=True)
            os.close(fd)
            raise
        self._files.append(_File(spool_id, path, fd, mm))
        return self._files[-1]


@dataclass
class Orphan:
    """A dead process's spool file, locked by us until :meth:`done` or :meth:`release`."""

    spool_id: str
    path: Path
    fd: int

    def lines_from(self, offset: int) -> tuple[list[bytes], int]:
        """Whole lines from ``offset`` on, and the offset after the last whole one (a torn
        last line was never acknowledged to anyone, and is dropped)."""
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        written = data.find(b"\0")  # the file is reserved zeroes past what was written
        end = data.rfind(b"\n", 0, len(data) if written < 0 else written) + 1
        return [line + b"\n" for line in data[:end].split(b"\n")[:-1]], offset + end

    def done(self) -> None:
        """Everything is shipped: delete the file."""
        fd, self.fd = self.fd, -1
        _remove(self.path, fd)

    def release(self) -> None:
        """Leave it for another try (nothing to do after :meth:`done`: its descriptor is
        closed, and the number may belong to a file or socket opened since)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def any_files(directory: Path) -> bool:
    """Whether ``directory`` holds spool files (of live processes or dead ones): a look, no
    locks taken."""
    return directory.is_dir() and any(directory.glob(f"*{SUFFIX}"))


def orphans(directory: Path) -> Iterator[Orphan]:
    """Spool files under ``directory`` whose owner is gone, each locked for the caller."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # shipped and deleted meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # alive, or being recovered by someone else
            continue
        if not path.exists():  # deleted between our open and our lock
            os.close(fd)
            continue
        yield Orphan(path.name[: -len(SUFFIX)], path, fd)


def _remove(path: Path, fd: int) -> None:
    path.unlink(missing_ok=True)  # before the lock goes with the fd: no one recovers it
    os.close(fd)
