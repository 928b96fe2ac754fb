"""Region split and merge on real processes: through the admin API and `multiraft ctl` while
writers run (every acknowledged write readable afterwards, the clients never fail), the API's
errors, and automatic split and merge on the playground with small thresholds."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any

from multiraft.client import Client, ClientError
from multiraft.server.localcluster import LocalCluster
from tests.ports import free_test_base_port

from .conftest import make_cluster
from .test_admin_ops import ctl, ctl_json

ROOT = Path(__file__).resolve().parents[2]


class Writers:
    """Threads writing unique keys spread over a..z until stopped; what was acknowledged and
    what failed (a failure is a call that gave up after the client's own retries)."""

    def __init__(self, seeds: list[str], n: int = 4) -> None:
        self.acked: dict[bytes, bytes] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(seeds, t), daemon=True) for t in range(n)]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self, seeds: list[str], t: int) -> None:
        rng = random.Random(t)
        with Client(seeds, timeout=20) as c:
            i = 0
            while not self._stop.is_set():
                key = bytes([97 + rng.randrange(26)]) + b"-%d-%d" % (t, i)
                value = b"v%d" % i
                try:
                    c.put(key, value)
                except ClientError as e:
                    with self._lock:
                        self.errors.append(f"{key!r}: {e}")
                else:
                    with self._lock:
                        self.acked[key] = value
                i += 1


def _regions(c: LocalCluster, sid: int = 1) -> list[dict[str, Any]]:
    regions: list[dict[str, Any]] = c.admin(sid, "/regions")["regions"]
    return regions


def _layout(c: LocalCluster, sid: int = 1) -> list[tuple[str, str]]:
    return [(r["start_key"], r["end_key"]) for r in _regions(c, sid)]


def _wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _post(c: LocalCluster, sid: int, path: str, body: Any) -> tuple[int, Any]:
    try:
        return 200, c.admin(sid, path, "POST", body, timeout=30)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _hex(s: str) -> str:
    return s.encode().hex()


def test_split_and_merge_through_the_api_and_ctl_while_writers_run(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, initial_regions=1, fsync=False)
    try:
        c.start_all()
        c.wait_ready(90)
        a1 = c.stores[1].admin_addr
        with Writers(c.client_addrs()) as w:
            _wait(lambda: w.count() >= 50, 60, "the first writes")
            # ctl, keys as text: the region keeps the rightmost range.
            out = ctl_json(a1, "split", "1", "h", "p")
            pieces = out["regions"]
            assert [(r["start_key"], r["end_key"]) for r in pieces] == [
                ("", _hex("h")), (_hex("h"), _hex("p")), (_hex("p"), "")
            ]
            assert pieces[2]["id"] == 1 and all(r["epoch"]["version"] == 3 for r in pieces)
            assert len({r["id"] for r in pieces}) == 3
            # The API, asked of another store (forwarded to the leader's if it is elsewhere).
            status, body = _post(c, 2, "/regions/1/split", {"keys": [_hex("t")]})
            assert status == 200, body
            left, right = body["regions"]
            assert (left["start_key"], left["end_key"], right["id"]) == (_hex("p"), _hex("t"), 1)
            _wait(lambda: len(_regions(c)) == 4, 30, "four regions on store 1")
            n = w.count()
            _wait(lambda: w.count() >= n + 50, 60, "writes to the new regions")
            # Merge back: ctl, then the API.
            merged = ctl_json(a1, "merge", str(pieces[1]["id"]), str(left["id"]))["region"]
            assert (merged["id"], merged["start_key"], merged["end_key"]) == (
                left["id"], _hex("h"), _hex("t")
            )
            status, body = _post(c, 3, f"/regions/{pieces[0]['id']}/merge", {"target": left["id"]})
            assert status == 200, body
            assert (body["region"]["start_key"], body["region"]["end_key"]) == ("", _hex("t"))
            _wait(lambda: len(_regions(c)) == 2 and len(_regions(c, 3)) == 2, 30, "two regions")
            n = w.count()
            _wait(lambda: w.count() >= n + 50, 60, "writes after the merges")
        assert not w.errors, w.errors[:5]
        with Client(c.client_addrs(), timeout=20) as client:
            for key, value in w.acked.items():
                assert client.get(key) == value, key
            assert len(client.scan(b"", b"", limit=len(w.acked) + 1000)) == len(w.acked)
        metrics = c.admin(1, "/metrics") + c.admin(2, "/metrics") + c.admin(3, "/metrics")
        ok_splits = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('multiraft_region_splits_total{outcome="ok",trigger="admin"}')
        )
        assert ok_splits == 2, ok_splits
    finally:
        c.close()


def test_split_and_merge_errors_change_nothing(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, initial_regions=3, fsync=False)
    try:
        c.start_all()
        c.wait_ready(90)
        before = _layout(c)
        r1, r2, r3 = (r["id"] for r in _regions(c))
        for body, code in (
            ({"keys": []}, 400),
            ({"keys": ["zz"]}, 400),  # not hex
            ({"keys": "00"}, 400),
            ({}, 400),
            ({"keys": ["ffff"]}, 400),  # outside region 1
        ):
            status, answer = _post(c, 1, f"/regions/{r1}/split", body)
            assert status == code, (body, answer)
            assert answer["error"]["message"]
        status, answer = _post(c, 1, f"/regions/{r1}/split", {"keys": ["01"], "epoch": {"conf_ver": 1, "version": 7}})
        assert status == 409 and answer["error"]["code"] == "EPOCH_NOT_MATCH", answer
        status, answer = _post(c, 1, "/regions/999/split", {"keys": ["01"]})
        assert status == 404
        status, answer = _post(c, 1, f"/regions/{r1}/merge", {"target": r3})
        assert status == 409 and answer["error"]["code"] == "MERGE_REFUSED", answer
        status, answer = _post(c, 1, f"/regions/{r1}/merge", {"target": "x"})
        assert status == 400
        status, answer = _post(c, 1, f"/regions/{r1}/merge", {"target": r1})
        assert status == 400
        p = ctl(c.stores[1].admin_addr, "split", str(r2), "--hex", "xyz")
        assert p.returncode == 2 and "hex" in p.stderr
        p = ctl(c.stores[1].admin_addr, "merge", str(r1), str(r3))
        assert p.returncode == 1 and "not adjacent" in p.stderr
        assert _layout(c) == before
        assert c.wait_ready(30) is not None
    finally:
        c.close()


def _playground(tmp_path: Path, *server_args: str) -> tuple[subprocess.Popen[str], int]:
    base = free_test_base_port(5)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable, "-m", "multiraft", "playground", "--stores", "3", "--initial-regions",
        "1", "--base-port", str(base), "--base-tick-ms", "50", "--data-dir", str(tmp_path),
        *(f"--server-arg={a}" for a in server_args),
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert p.stdout is not None
    for line in p.stdout:
        if "all with a leader" in line:
            return p, base
    p.wait(10)
    raise AssertionError(f"the playground did not start (exit {p.returncode})")


def test_one_region_splits_to_eight_under_load_and_merges_back_when_emptied(tmp_path: Path) -> None:
    """On the playground, with small thresholds: a steady write load splits the one region
    into at least 8; deleting the data merges them back into one."""
    p, base = _playground(
        tmp_path,
        "--region-split-size=4096",
        "--region-split-keys=0",
        "--region-merge-size=1024",
        "--region-merge-keys=20",
        "--split-merge-interval-s=2",
        "--no-fsync",
    )
    admin = LocalCluster(3, tmp_path / "view", base_port=base)  # only to reach the admin API
    seeds = admin.client_addrs()
    try:
        keys: list[bytes] = []
        with Client(seeds, timeout=20) as c:
            deadline = time.monotonic() + 120
            while len(_regions(admin)) < 8:
                assert time.monotonic() < deadline, f"{len(_regions(admin))} regions"
                for _ in range(20):
                    key = b"key-%06d" % len(keys)
                    c.put(key, b"x" * 200)
                    keys.append(key)
            regions = len(_regions(admin))
            for key in keys:
                assert c.get(key) == b"x" * 200
            for key in keys:
                c.delete(key)
            _wait(lambda: len(_regions(admin)) == 1, 150, "the regions to merge back into one")
            assert c.scan(b"", b"", limit=10) == []
            c.put(b"after", b"1")
            assert c.get(b"after") == b"1"
        assert regions >= 8
        metrics = admin.admin(1, "/metrics") + admin.admin(2, "/metrics") + admin.admin(3, "/metrics")
        assert 'trigger="size"' in metrics and 'trigger="auto"' in metrics
    finally:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
