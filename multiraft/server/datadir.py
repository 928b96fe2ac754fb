"""The data-dir lock: one store process per data dir.

LMDB lets several processes open the same environment, so without a lock a second `multiraft
server` on a data dir that is in use (other ports) would recover the same regions, win an
election at a higher term and accept writes next to the first one: a split brain. Before the
engine is opened, the store takes an exclusive `flock` on `<data_dir>/LOCK` and writes its pid
there; a second process finds the lock taken and stops with the holder's pid in its message.

The kernel releases a `flock` when its holder exits, however it exits (a SIGKILL included), so
a stale `LOCK` file never blocks a restart; the file itself is left in place (removing it
would let a process that still has the old file open and a newcomer both "hold" a lock).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from .config import ConfigError

__all__ = ["DataDirLock", "DataDirLocked", "LOCK_FILE"]

LOCK_FILE = "LOCK"


class DataDirLocked(ConfigError):
    """Another process holds the data dir's lock. `pid` is the holder's, if it wrote one."""

    def __init__(self, data_dir: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"data dir {data_dir} is in use by another multiraft process ({who}); "
            "stop it first, or use another --data-dir"
        )
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0)
    except OSError:
        return None
    text = raw.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class DataDirLock:
    """`acquire()` creates the data dir if needed and takes the lock (raises DataDirLocked if
    another process holds it); `release()` gives it back (idempotent)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        assert self._fd is None, "acquire() twice"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirLocked(str(self.data_dir), pid) from None
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Blank the pid first: a reader never sees a pid of a process that let go.
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing the last descriptor releases the flock
