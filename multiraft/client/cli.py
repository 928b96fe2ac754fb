"""`multiraft kv`: reads and writes from a shell.

    multiraft kv [--client ADDR[,ADDR...]] [--timeout S] [--hex] [--json] COMMAND
        get KEY
        put KEY VALUE
        delete KEY
        scan [START] [END] [--limit N]
        cas KEY [EXPECTED] [NEW] [--expect-absent] [--new-absent]

Keys and values are UTF-8 text, or hex with `--hex` (input and output). Output is plain text
(`scan`: one `key<TAB>value` line per pair), or one JSON document with `--json`. Exit status:
0 on success; 2 with one line on stderr for a command line that cannot be run (an unknown
option, bad hex, a missing argument, an empty or oversized key, a bad address), checked before
anything is sent; 1 with one line on stderr when no store accepts a connection (within
`CONNECT_TIMEOUT`, whatever `--timeout` says), for another error, for `get` of an absent key
("not found") and for a `cas` that did not swap ("not swapped"); `--json` still prints the
result on stdout in those two cases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from .errors import ClientError
from .protocol import MAX_KEY, MAX_VALUE, parse_addr
from .sync import Client

__all__ = ["add_kv_parser", "run_kv", "DEFAULT_CLIENT_ADDR", "CONNECT_TIMEOUT"]

DEFAULT_CLIENT_ADDR = "127.0.0.1:20160"
# Seconds to wait for some store to accept a connection before giving up (a stopped cluster
# fails after this, not after the call's --timeout).
CONNECT_TIMEOUT = 2.0


def add_kv_parser(sub: Any) -> argparse.ArgumentParser:
    """The `kv` subcommand on an argparse subparsers object."""
    p: argparse.ArgumentParser = sub.add_parser(
        "kv",
        help="get, put, delete, scan and compare-and-swap keys",
        description="Talk to a cluster through its client port. Keys and values are UTF-8 "
        "text (hex with --hex). Exit 2 on usage errors; 1 when no store can be reached, on "
        "other errors, absent keys (get) and failed compares (cas).",
    )
    p.add_argument(
        "--client",
        default=os.environ.get("MULTIRAFT_CLIENT", DEFAULT_CLIENT_ADDR),
        metavar="ADDR[,ADDR...]",
        help="client addresses of some stores (default $MULTIRAFT_CLIENT or "
        f"{DEFAULT_CLIENT_ADDR})",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    p.add_argument("--hex", action="store_true", help="keys and values are hex, in and out")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    cmds = p.add_subparsers(dest="kv_command", required=True, metavar="COMMAND")
    g = cmds.add_parser("get", help="print a key's value")
    g.add_argument("key")
    pt = cmds.add_parser("put", help="set a key")
    pt.add_argument("key")
    pt.add_argument("value")
    d = cmds.add_parser("delete", help="delete a key")
    d.add_argument("key")
    s = cmds.add_parser("scan", help="list pairs with START <= key < END")
    s.add_argument("start", nargs="?", default="")
    s.add_argument("end", nargs="?", default="", help="exclusive; empty: no bound")
    s.add_argument("--limit", type=int, default=100, help="at most this many pairs (default 100)")
    c = cmds.add_parser(
        "cas",
        help="set KEY to NEW if it holds EXPECTED",
        description="Compare-and-swap. With --expect-absent leave out EXPECTED (the key must "
        "not exist); with --new-absent leave out NEW (the key is deleted).",
    )
    c.add_argument("key")
    c.add_argument("values", nargs="*", metavar="EXPECTED NEW")
    c.add_argument("--expect-absent", action="store_true", help="the key must not exist")
    c.add_argument("--new-absent", action="store_true", help="delete the key on success")
    return p


class _Usage(Exception):
    """A command line that cannot be run (exit 2, one line)."""


def _decode_arg(text: str, use_hex: bool, what: str) -> bytes:
    if not use_hex:
        return text.encode("utf-8", "surrogateescape")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise _Usage(f"{what} is not hex: {text!r}") from None


def _key(text: str, use_hex: bool, what: str = "KEY", *, bound: bool = False) -> bytes:
    """A key (1..MAX_KEY bytes), or a scan bound (0..MAX_KEY bytes; empty: no bound)."""
    key = _decode_arg(text, use_hex, what)
    if len(key) > MAX_KEY or (not key and not bound):
        raise _Usage(f"{what} must be {0 if bound else 1}..{MAX_KEY} bytes, got {len(key)}")
    return key


def _value(text: str, use_hex: bool, what: str) -> bytes:
    value = _decode_arg(text, use_hex, what)
    if len(value) > MAX_VALUE:
        raise _Usage(f"{what} must be at most {MAX_VALUE} bytes, got {len(value)}")
    return value


def _show(data: bytes, use_hex: bool) -> str:
    return data.hex() if use_hex else data.decode("utf-8", "backslashreplace")


@dataclass
class _Call:
    """A `kv` command, checked and decoded before anything is sent."""

    cmd: str
    key: bytes = b""
    value: bytes | None = None
    expected: bytes | None = None
    end: bytes = b""
    limit: int = 0


def _prepare(args: argparse.Namespace) -> tuple[list[str], _Call]:
    """The seed addresses and the call; raises _Usage for anything wrong on the command line."""
    h: bool = args.hex
    seeds = [a.strip() for a in str(args.client).split(",") if a.strip()]
    if not seeds:
        raise _Usage("--client needs at least one address")
    for a in seeds:
        try:
            parse_addr(a)
        except ValueError as e:
            raise _Usage(f"--client: {e}") from None
    if not args.timeout > 0:
        raise _Usage(f"--timeout must be positive, got {args.timeout:g}")
    cmd: str = args.kv_command
    if cmd == "get" or cmd == "delete":
        return seeds, _Call(cmd, _key(args.key, h))
    if cmd == "put":
        return seeds, _Call(cmd, _key(args.key, h), value=_value(args.value, h, "VALUE"))
    if cmd == "scan":
        if args.limit < 0:
            raise _Usage("--limit must be >= 0")
        start = _key(args.start, h, "START", bound=True)
        end = _key(args.end, h, "END", bound=True)
        return seeds, _Call(cmd, start, end=end, limit=args.limit)
    if cmd == "cas":
        need = 2 - int(args.expect_absent) - int(args.new_absent)
        values: list[str] = args.values
        if len(values) != need:
            names = [n for n, absent in (("EXPECTED", args.expect_absent), ("NEW", args.new_absent))
                     if not absent]
            raise _Usage(f"cas needs KEY {' '.join(names)}".rstrip() + f" ({len(values)} given)")
        it = iter(values)
        expected = None if args.expect_absent else _value(next(it), h, "EXPECTED")
        new = None if args.new_absent else _value(next(it), h, "NEW")
        return seeds, _Call(cmd, _key(args.key, h), value=new, expected=expected)
    raise _Usage(f"unknown kv command {cmd!r}")


def _unreachable(addrs: list[str], timeout: float) -> list[str]:
    """Connect to every address at once: [] as soon as one accepts, else why each failed (all
    within `timeout`)."""

    async def attempt(addr: str) -> str | None:
        host, port = parse_addr(addr)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            return f"{addr}: no answer within {timeout:g}s"
        except OSError as e:
            return f"{addr}: {e.strerror or e}"
        writer.close()
        return None

    async def first() -> list[str]:
        errors: list[str] = []
        for done in asyncio.as_completed([attempt(a) for a in addrs]):
            err = await done
            if err is None:
                return []  # asyncio.run cancels the other attempts
            errors.append(err)
        return errors

    return asyncio.run(first())


def _error(msg: str, code: int) -> int:
    print(f"multiraft kv: error: {msg}", file=sys.stderr)
    return code


def run_kv(args: argparse.Namespace) -> int:
    """Run `multiraft kv ...`; returns the exit status."""
    try:
        seeds, call = _prepare(args)
    except _Usage as e:
        return _error(str(e), 2)
    try:
        # A stopped cluster fails here, at once, not after the call's whole timeout.
        errors = _unreachable(seeds, min(CONNECT_TIMEOUT, args.timeout))
        if errors:
            return _error("no store accepts a connection: " + "; ".join(errors), 1)
        with Client(seeds, timeout=args.timeout) as client:
            return _execute(client, call, args)
    except (ClientError, ValueError, TypeError) as e:
        return _error(str(e), 1)
    except KeyboardInterrupt:
        return 130


def _execute(client: Client, call: _Call, args: argparse.Namespace) -> int:
    h: bool = args.hex
    cmd = call.cmd
    if cmd == "get":
        value = client.get(call.key)
        if args.json:
            _print_json({"key": _show(call.key, h), "value": None if value is None else _show(value, h)})
        elif value is not None:
            print(_show(value, h))
        if value is None:
            print(f"not found: {args.key}", file=sys.stderr)
            return 1
        return 0
    if cmd == "put":
        assert call.value is not None
        client.put(call.key, call.value)
        _print_ok(args.json)
        return 0
    if cmd == "delete":
        client.delete(call.key)
        _print_ok(args.json)
        return 0
    if cmd == "scan":
        pairs = client.scan(call.key, call.end, call.limit)
        if args.json:
            _print_json({"pairs": [[_show(k, h), _show(v, h)] for k, v in pairs]})
        else:
            for k, v in pairs:
                print(f"{_show(k, h)}\t{_show(v, h)}")
        return 0
    # cas
    swapped = client.cas(call.key, call.expected, call.value)
    if args.json:
        _print_json({"swapped": swapped})
    elif swapped:
        print("swapped")
    if not swapped:
        print(f"not swapped: {args.key} did not hold the expected value", file=sys.stderr)
        return 1
    return 0


def _print_ok(as_json: bool) -> None:
    if as_json:
        _print_json({"ok": True})
    else:
        print("OK")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj))
