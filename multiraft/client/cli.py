"""`multiraft kv`: reads and writes from a shell.

    multiraft kv [--client ADDR[,ADDR...]] [--timeout S] [--hex] [--json] COMMAND
        get KEY
        put KEY VALUE
        delete KEY
        scan [START] [END] [--limit N]
        cas KEY [EXPECTED] [NEW] [--expect-absent] [--new-absent]

Keys and values are UTF-8 text, or hex with `--hex` (input and output). Output is plain text
(`scan`: one `key<TAB>value` line per pair), or one JSON document with `--json`. Exit status:
0 on success; 1 with one line on stderr for an error, for `get` of an absent key ("not
found") and for a `cas` that did not swap ("not swapped"); `--json` still prints the result
on stdout in those two cases.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .errors import ClientError
from .sync import Client

__all__ = ["add_kv_parser", "run_kv", "DEFAULT_CLIENT_ADDR"]

DEFAULT_CLIENT_ADDR = "127.0.0.1:20160"


def add_kv_parser(sub: Any) -> argparse.ArgumentParser:
    """The `kv` subcommand on an argparse subparsers object."""
    p: argparse.ArgumentParser = sub.add_parser(
        "kv",
        help="get, put, delete, scan and compare-and-swap keys",
        description="Talk to a cluster through its client port. Keys and values are UTF-8 "
        "text (hex with --hex). Exit 1 on errors, absent keys (get) and failed compares (cas).",
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
    """A command line that cannot be run (exit 1, one line)."""


def _decode_arg(text: str, use_hex: bool, what: str) -> bytes:
    if not use_hex:
        return text.encode("utf-8", "surrogateescape")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise _Usage(f"{what} is not hex: {text!r}") from None


def _show(data: bytes, use_hex: bool) -> str:
    return data.hex() if use_hex else data.decode("utf-8", "backslashreplace")


def run_kv(args: argparse.Namespace) -> int:
    """Run `multiraft kv ...`; returns the exit status."""
    h: bool = args.hex
    try:
        with Client(args.client, timeout=args.timeout) as client:
            return _run(client, args, h)
    except _Usage as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ClientError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(client: Client, args: argparse.Namespace, h: bool) -> int:
    cmd: str = args.kv_command
    out: Any
    if cmd == "get":
        key = _decode_arg(args.key, h, "KEY")
        value = client.get(key)
        if args.json:
            _print_json({"key": _show(key, h), "value": None if value is None else _show(value, h)})
        elif value is not None:
            print(_show(value, h))
        if value is None:
            print(f"not found: {args.key}", file=sys.stderr)
            return 1
        return 0
    if cmd == "put":
        client.put(_decode_arg(args.key, h, "KEY"), _decode_arg(args.value, h, "VALUE"))
        _print_ok(args.json)
        return 0
    if cmd == "delete":
        client.delete(_decode_arg(args.key, h, "KEY"))
        _print_ok(args.json)
        return 0
    if cmd == "scan":
        if args.limit < 0:
            raise _Usage("--limit must be >= 0")
        pairs = client.scan(
            _decode_arg(args.start, h, "START"), _decode_arg(args.end, h, "END"), args.limit
        )
        if args.json:
            out = {"pairs": [[_show(k, h), _show(v, h)] for k, v in pairs]}
            _print_json(out)
        else:
            for k, v in pairs:
                print(f"{_show(k, h)}\t{_show(v, h)}")
        return 0
    if cmd == "cas":
        need = 2 - int(args.expect_absent) - int(args.new_absent)
        values: list[str] = args.values
        if len(values) != need:
            names = [n for n, absent in (("EXPECTED", args.expect_absent), ("NEW", args.new_absent))
                     if not absent]
            raise _Usage(f"cas needs KEY {' '.join(names)}".rstrip() + f" ({len(values)} given)")
        it = iter(values)
        expected = None if args.expect_absent else _decode_arg(next(it), h, "EXPECTED")
        new = None if args.new_absent else _decode_arg(next(it), h, "NEW")
        swapped = client.cas(_decode_arg(args.key, h, "KEY"), expected, new)
        if args.json:
            _print_json({"swapped": swapped})
        elif swapped:
            print("swapped")
        if not swapped:
            print(f"not swapped: {args.key} did not hold the expected value", file=sys.stderr)
            return 1
        return 0
    raise _Usage(f"unknown kv command {cmd!r}")


def _print_ok(as_json: bool) -> None:
    if as_json:
        _print_json({"ok": True})
    else:
        print("OK")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj))
