"""`multiraft ctl`: the admin API from a shell (tables for humans, `--json` for scripts).

Mutating commands wait until their effect is visible on the store asked (the leader moved,
the peer is there, the peer is gone, the split keys start regions, the target covers the
merged source), with a spinner on stderr when it is a terminal, and give up after `--timeout`
seconds (exit 1). `add-peer` adds a voter in two steps, both done by the region's leader: a
learner, promoted once it caught up; the spinner shows how far the learner's log is, and a
learner that does not catch up within `--timeout` stays a learner (exit 1).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["add_ctl_parser", "run_ctl", "AdminClient", "CtlError"]


class CtlError(Exception):
    """An error for the operator, printed on one line."""


class AdminClient:
    """A tiny blocking client of the admin API."""

    def __init__(self, addr: str, token: str = "", timeout: float = 20.0) -> None:
        self.base = addr if addr.startswith("http") else f"http://{addr}"
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())["error"]
                msg = f"{err['code']}: {err['message']}"
            except (ValueError, KeyError, TypeError):
                msg = f"HTTP {e.code} {e.reason}"
            raise CtlError(msg) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CtlError(f"cannot reach the admin API at {self.base}: {reason}") from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)


def add_ctl_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "ctl", help="administer a cluster through a store's admin API"
    )
    p.add_argument("--admin", default="127.0.0.1:20180", help="a store's admin address")
    p.add_argument("--token", default="", help="bearer token for mutating calls")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for a change (default 30)"
    )
    cmds = p.add_subparsers(dest="ctl_command", required=True)
    cmds.add_parser("status", help="the store's status and every store's state")
    cmds.add_parser("stores", help="every store known, with its state (up, down, unreachable)")
    rs = cmds.add_parser(
        "remove-store", help="forget a dead store for good (once its replicas were moved)"
    )
    rs.add_argument("store", type=int)
    cmds.add_parser("regions", help="the regions on the store")
    r = cmds.add_parser("region", help="one region")
    r.add_argument("id", type=int)
    t = cmds.add_parser("transfer-leader", help="move a region's leader to another store")
    t.add_argument("id", type=int)
    t.add_argument("store", type=int)
    a = cmds.add_parser(
        "add-peer",
        help="add a replica of a region on a store: a learner, promoted to a voter once caught up",
    )
    a.add_argument("id", type=int)
    a.add_argument("store", type=int)
    a.add_argument(
        "--learner", action="store_true", help="a learner only (default: a voter, through a learner)"
    )
    d = cmds.add_parser("remove-peer", help="remove a region's replica from a store")
    d.add_argument("id", type=int)
    d.add_argument("store", type=int)
    s = cmds.add_parser("split", help="split a region at one or more keys")
    s.add_argument("id", type=int)
    s.add_argument("keys", nargs="+", metavar="KEY", help="split keys (text; --hex for hex)")
    s.add_argument("--hex", action="store_true", help="the keys are hex-encoded")
    m = cmds.add_parser("merge", help="merge a region into an adjacent one on the same stores")
    m.add_argument("id", type=int, metavar="SOURCE")
    m.add_argument("target", type=int, metavar="TARGET")
    return p


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _key(hexkey: str, end: bool = False) -> str:
    if not hexkey:
        return "+inf" if end else "-inf"
    raw = bytes.fromhex(hexkey)
    if all(32 <= b < 127 for b in raw):
        return repr(raw.decode())
    return "0x" + hexkey


def _region_rows(regions: list[dict[str, Any]]) -> str:
    rows = []
    for r in regions:
        leader = r["leader"]
        peers = ",".join(
            f"{p['store_id']}" + ("(L)" if p["role"] == "learner" else "") for p in r["peers"]
        )
        rows.append(
            [
                str(r["id"]),
                _key(r["start_key"]),
                _key(r["end_key"], end=True),
                f"{r['epoch']['conf_ver']}/{r['epoch']['version']}",
                str(leader["store_id"]) if leader else "-",
                peers,
                str(r["applied_index"]),
                str(r["approximate_size"]),
                "yes" if r["hibernated"] else "",
            ]
        )
    return _table(
        ["REGION", "START", "END", "EPOCH", "LEADER", "STORES", "APPLIED", "SIZE", "HIBERNATED"],
        rows,
    )


def _status_text(s: dict[str, Any]) -> str:
    a = s["addresses"]
    lines = [
        f"store {s['store_id']} of cluster {s['cluster_id']}, up {s['uptime_seconds']:.0f}s",
        f"regions {s['regions']}  leaders {s['leaders']}  hibernated {s['hibernated']}",
        f"peer {a['peer']}  client {a['client']}  admin {a['admin']}",
    ]
    stores = s.get("stores") or {}
    if stores:
        ordered = [v for _, v in sorted(stores.items(), key=lambda kv: int(kv[0]))]
        lines += ["", _stores_text(ordered, s["store_id"])]
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _stores_text(stores: list[dict[str, Any]], me: int, now: float | None = None) -> str:
    """The store table: state, since when a store is not heard from, from which stores."""
    now = time.time() if now is None else now
    rows = []
    for v in stores:
        sid = v["store_id"]
        since = ""
        if v.get("down_since") is not None:
            t = float(v["down_since"])
            since = f"{time.strftime('%H:%M:%S', time.localtime(t))} ({_ago(max(0.0, now - t))} ago)"
        elif v["state"] != "up" and v.get("last_heard_seconds_ago") is None and sid != me:
            since = "never heard"
        rows.append(
            [
                f"{sid} (this)" if sid == me else str(sid),
                v["state"],
                since,
                ",".join(str(x) for x in v.get("unreachable_from") or []),
                v.get("peer_addr", ""),
                v.get("client_addr", ""),
                v.get("admin_addr", ""),
            ]
        )
    headers = ["STORE", "STATE", "NOT HEARD SINCE", "UNREACHABLE FROM", "PEER", "CLIENT", "ADMIN"]
    return _table(headers, rows)


def _wait(
    what: str | Callable[[], str], check: Callable[[], bool], timeout: float, poll: float = 0.2
) -> None:
    """Poll `check` until true; a spinner on stderr when it is a terminal, saying `what` (or
    what `what()` says: progress)."""
    tty = sys.stderr.isatty()
    label = what if isinstance(what, str) else "the change"
    spinner = itertools.cycle("|/-\\")
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if check():
                    return
            except CtlError:
                pass  # e.g. the store is briefly without a leader: keep polling
            if time.monotonic() > deadline:
                raise CtlError(f"timed out after {timeout:.0f}s waiting for {label}")
            if tty:
                text = what if isinstance(what, str) else _progress_text(what)
                sys.stderr.write(f"\r\033[K{next(spinner)} {text} ")
                sys.stderr.flush()
            time.sleep(poll)
    finally:
        if tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _progress_text(what: Callable[[], str]) -> str:
    try:
        return what()
    except CtlError:
        return "waiting"


def _leader_client(c: AdminClient, path: str) -> AdminClient:
    """A client of the region leader's store (its admin address from the store asked), or
    `c` if that is the leader's or the address is unknown."""
    try:
        leader = c.get(path)["leader"]
        if leader is None:
            return c
        status = c.get("/status")
        if leader["store_id"] == status["store_id"]:
            return c
        addr = (status.get("stores") or {}).get(str(leader["store_id"]), {}).get("admin_addr")
    except (CtlError, KeyError, TypeError):
        return c
    return AdminClient(addr, c.token, timeout=5.0) if addr else c


def _add_voter(c: AdminClient, path: str, rid: int, store: int, timeout: float) -> None:
    """POST a voter (the leader adds a learner and promotes it once caught up) and show the
    learner's progress meanwhile, from the leader's view of the region."""
    box: list[Any] = []
    slow = AdminClient(c.base, c.token, timeout=timeout + 30)

    def post() -> None:
        try:
            body = {"store_id": store, "timeout": min(timeout, 3600.0)}
            box.append(slow.request("POST", f"{path}/peers", body))
        except CtlError as e:
            box.append(e)

    leader_c = _leader_client(c, path)

    def progress() -> str:
        region = leader_c.get(path)
        peers = {p["store_id"]: p for p in region["peers"]}
        me = peers.get(store)
        if me is None:
            return f"adding a learner of region {rid} on store {store}"
        if me["role"] != "learner":
            return f"store {store} is a {me['role']} of region {rid}"
        lead = region["leader"]
        top = peers[lead["store_id"]].get("matched") if lead else None
        if me.get("matched") is None or top is None:
            return f"learner of region {rid} on store {store} catching up"
        return (
            f"learner of region {rid} on store {store} catching up: log at {me['matched']} of "
            f"{top}; promoted once caught up"
        )

    t = threading.Thread(target=post, name="add-voter", daemon=True)
    t.start()
    _wait(progress, lambda: not t.is_alive(), timeout + 40)
    if isinstance(box[0], CtlError):
        raise box[0]


def _has_peer(region: dict[str, Any], store: int, role: str | None) -> bool:
    return any(p["store_id"] == store and (role is None or p["role"] == role) for p in region["peers"])


def run_ctl(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        print("multiraft ctl: error: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        keys = _split_keys(args) if args.ctl_command == "split" else []
    except ValueError as e:
        print(f"multiraft ctl: error: {e}", file=sys.stderr)
        return 2
    try:
        out = _run(args, keys)
    except CtlError as e:
        print(f"multiraft ctl: error: {e}", file=sys.stderr)
        return 1
    if out is not None:
        print(out)
    return 0


def _split_keys(args: argparse.Namespace) -> list[bytes]:
    if not args.hex:
        return [k.encode() for k in args.keys]
    try:
        return [bytes.fromhex(k) for k in args.keys]
    except ValueError:
        raise ValueError(f"split keys must be hex with --hex: {args.keys}") from None


def _covers(region: dict[str, Any], start: str, end: str) -> bool:
    """Whether the region (as the API shows it, hex keys) covers `[start, end)`."""
    lo, hi = region["start_key"], region["end_key"]
    return bytes.fromhex(lo) <= bytes.fromhex(start) and (
        not hi or (end != "" and bytes.fromhex(end) <= bytes.fromhex(hi))
    )


def _run(args: argparse.Namespace, split_keys: list[bytes]) -> str | None:
    c = AdminClient(args.admin, args.token)
    as_json = args.json
    cmd = args.ctl_command
    if cmd == "status":
        s = c.get("/status")
        return json.dumps(s, indent=2) if as_json else _status_text(s)
    if cmd == "stores":
        doc = c.get("/stores")
        return json.dumps(doc, indent=2) if as_json else _stores_text(doc["stores"], doc["store_id"])
    if cmd == "remove-store":
        doc = c.request("DELETE", f"/stores/{args.store}")
        if as_json:
            return json.dumps(doc, indent=2)
        return f"store {args.store} removed\n{_stores_text(doc['stores'], doc['store_id'])}"
    if cmd == "regions":
        regions = c.get("/regions")["regions"]
        return json.dumps({"regions": regions}, indent=2) if as_json else _region_rows(regions)
    rid = args.id
    path = f"/regions/{rid}"
    if cmd == "region":
        r = c.get(path)
        return json.dumps(r, indent=2) if as_json else _region_rows([r])
    if cmd == "split":
        hexkeys = [k.hex() for k in split_keys]
        regions = c.request("POST", f"{path}/split", {"keys": hexkeys})["regions"]

        def split_here() -> bool:
            starts = {r["start_key"] for r in c.get("/regions")["regions"]}
            return all(k in starts for k in hexkeys)

        _wait(f"region {rid}'s split to show", split_here, args.timeout)
        if as_json:
            return json.dumps({"regions": regions}, indent=2)
        return f"region {rid}: split into {len(regions)} regions\n{_region_rows(regions)}"
    if cmd == "merge":
        target = args.target
        source = c.get(path)
        merged = c.request("POST", f"{path}/merge", {"target": target})["region"]

        def merged_here() -> bool:
            r = c.get(f"/regions/{target}")
            return _covers(r, source["start_key"], source["end_key"])

        _wait(f"region {rid} to merge into region {target}", merged_here, args.timeout)
        if as_json:
            return json.dumps({"region": merged}, indent=2)
        return f"region {rid}: merged into region {target}\n{_region_rows([merged])}"
    store = args.store
    if cmd == "transfer-leader":
        c.request("POST", f"{path}/transfer-leader", {"store_id": store})

        def moved() -> bool:
            leader = c.get(path)["leader"]
            return leader is not None and leader["store_id"] == store

        _wait(f"region {rid}'s leader to move to store {store}", moved, args.timeout)
        done = f"region {rid}: leader is on store {store}"
    elif cmd == "add-peer":
        role = "learner" if args.learner else "voter"
        if role == "voter":
            _add_voter(c, path, rid, store, args.timeout)
        else:
            c.request("POST", f"{path}/peers", {"store_id": store, "role": role})
        _wait(
            f"a {role} of region {rid} on store {store}",
            lambda: _has_peer(c.get(path), store, role),
            args.timeout,
        )
        done = f"region {rid}: {role} added on store {store}"
    elif cmd == "remove-peer":
        c.request("DELETE", f"{path}/peers/{store}")
        _wait(
            f"region {rid}'s replica on store {store} to go",
            lambda: not _has_peer(c.get(path), store, None),
            args.timeout,
        )
        done = f"region {rid}: replica on store {store} removed"
    else:  # pragma: no cover - argparse rejects it
        raise CtlError(f"unknown command {cmd}")
    region = c.get(path)
    if as_json:
        return json.dumps({"result": done, "region": region}, indent=2)
    return f"{done}\n{_region_rows([region])}"
