"""`FaultyCluster`: real store processes (`LocalCluster`) whose store-to-store traffic passes a
`FaultProxy`, with the process and disk faults a nemesis needs.

- Network: `proxy` (partitions, one-way loss, delays; multiraft/testing/proxy.py). Every store
  advertises its proxy address and every `--initial-cluster` lists proxy addresses, so what
  stores learn from each other (handshakes, gossip, `stores.json`) names the proxy too.
- Processes: `kill` (SIGKILL), `start`, `pause` / `resume` (SIGSTOP / SIGCONT).
- Disk: `fill_disk` caps the size of the files a running store writes just above its data
  file's size (RLIMIT_FSIZE on the live process, `LocalCluster.set_file_size_limit`): the
  next writes that need the file to grow fail with EFBIG and the store stops (fail-stop);
  `free_disk` lifts the cap. `slow_disk` delays every durable commit of a store by rewriting
  the file its `MULTIRAFT_TEST_DISK_DELAY` names (multiraft/engine/disk_delay.py).
- Logs: each store's output goes to `<dir>/store-<i>.log`; `rotate_log` moves what is there to
  `store-<i>.log.<n>` (so that a file-size cap does not stop the store from logging why it
  stops); `save_logs` copies every segment to a folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from multiraft.engine.disk_delay import ENV as DISK_DELAY_ENV
from multiraft.server.localcluster import LocalCluster, StoreProc, free_base_port

from .proxy import FaultProxy

__all__ = ["FaultyCluster", "DATA_FILE"]

_log = logging.getLogger(__name__)

# LMDB's data file in a store's data dir.
DATA_FILE = "data.mdb"


class FaultyCluster:
    """See the module docstring. `extra_args` go to every store's command line."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        stores: int = 3,
        *,
        initial_regions: int = 2,
        base_tick_ms: int = 50,
        extra_args: list[str] | None = None,
        seed: int | None = None,
        base_port: int | None = None,
        log_level: str = "info",
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.proxy = FaultProxy(seed=seed).start()
        try:
            self.cluster = LocalCluster(
                stores,
                self.path,
                initial_regions=initial_regions,
                base_port=base_port if base_port is not None else free_base_port(stores + 2),
                base_tick_ms=base_tick_ms,
                fsync=True,
                extra_args=extra_args,
                log_level=log_level,
                advertise_peer=self.proxy.route,
            )
        except BaseException:
            self.proxy.close()
            raise
        for sid, sp in self.cluster.stores.items():
            sp.env[DISK_DELAY_ENV] = str(self._delay_file(sid))
        self._segments: dict[int, int] = {}

    # -- the cluster ----------------------------------------------------------------------------

    @property
    def stores(self) -> dict[int, StoreProc]:
        return self.cluster.stores

    def start_all(self) -> None:
        self.cluster.start_all()

    def start(self, sid: int) -> None:
        sp = self.stores[sid]
        if not sp.running:
            if sp.proc is not None:
                sp.proc.wait()
            self.cluster.start(sid)

    def wait_ready(self, timeout: float = 60.0) -> dict[int, int]:
        return self.cluster.wait_ready(timeout)

    def close(self) -> dict[int, int]:
        try:
            return self.cluster.close()
        finally:
            self.proxy.close()

    def __enter__(self) -> FaultyCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def running(self) -> list[int]:
        return [sid for sid, sp in self.stores.items() if sp.running]

    def exit_code(self, sid: int) -> int | None:
        """The exit status of a store that exited by itself (None: running or never started
        or killed on purpose)."""
        p = self.stores[sid].proc
        return None if p is None else p.poll()

    # -- process faults -------------------------------------------------------------------------

    def kill(self, sid: int) -> None:
        self.cluster.kill(sid)

    def pause(self, sid: int) -> None:
        self.cluster.pause(sid)

    def resume(self, sid: int) -> None:
        self.cluster.resume(sid)

    # -- disk faults ----------------------------------------------------------------------------

    def data_file_size(self, sid: int) -> int:
        try:
            return (self.stores[sid].data_dir / DATA_FILE).stat().st_size
        except OSError:
            return 0

    def fill_disk(self, sid: int, headroom: int) -> int:
        """From now on store `sid` may write files up to `headroom` bytes past its data file's
        current size; returns that limit. Its log is rotated first (the log is a file too)."""
        self.rotate_log(sid)
        limit = self.data_file_size(sid) + headroom
        self.cluster.set_file_size_limit(sid, limit)
        return limit

    def free_disk(self, sid: int) -> None:
        self.cluster.set_file_size_limit(sid, None)

    def _delay_file(self, sid: int) -> Path:
        return self.path / f"disk-delay-{sid}"

    def slow_disk(self, sid: int, ms: float) -> None:
        """Every durable commit of store `sid` sleeps `ms` first (0: no more)."""
        tmp = self._delay_file(sid).with_suffix(".tmp")
        tmp.write_text(f"{ms:g}\n")
        os.replace(tmp, self._delay_file(sid))

    # -- logs -----------------------------------------------------------------------------------

    def rotate_log(self, sid: int) -> Path:
        """Move the log so far to a numbered segment and empty the live one (the store keeps
        appending to it: it is opened with O_APPEND)."""
        log = self.stores[sid].log_path
        n = self._segments.get(sid, 0) + 1
        self._segments[sid] = n
        seg = log.with_name(f"{log.name}.{n}")
        try:
            shutil.copyfile(log, seg)
            with open(log, "r+b") as f:
                f.truncate(0)
        except OSError as e:
            _log.warning("could not rotate %s: %s", log, e)
        return seg

    def log_text(self, sid: int) -> str:
        """The live segment of store `sid`'s log."""
        try:
            return self.stores[sid].log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_files(self, sid: int) -> list[Path]:
        """Every segment of store `sid`'s log, oldest first."""
        log = self.stores[sid].log_path
        segs = [log.with_name(f"{log.name}.{n}") for n in range(1, self._segments.get(sid, 0) + 1)]
        return [p for p in [*segs, log] if p.exists()]

    def save_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for sid in self.stores:
            for p in self.log_files(sid):
                target = dest / p.name
                shutil.copyfile(p, target)
                out.append(target)
        return out
