"""The `multiraft` command line."""

from __future__ import annotations

import argparse
import sys


def _non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    from multiraft import __version__

    parser = argparse.ArgumentParser(prog="multiraft", description="A multi-raft storage node.")
    parser.add_argument(
        "--version", action="version", version=f"multiraft {__version__}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser(
        "example", help="drive a 3-node in-memory Raft group and print what each node applied"
    )
    ex.add_argument(
        "--entries", type=_non_negative, default=5, help="how many entries to propose"
    )
    ex.add_argument("--seed", type=int, default=1, help="seed of the election timeouts")
    from multiraft.server.ctl import add_ctl_parser
    from multiraft.server.main import add_server_parser
    from multiraft.server.playground import add_playground_parser

    add_server_parser(sub)
    add_playground_parser(sub)
    add_ctl_parser(sub)
    from multiraft.client.cli import add_kv_parser

    add_kv_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "example":
        from multiraft.examples.three_nodes import run

        run(args.entries, args.seed)
        return 0
    if args.command == "server":
        from multiraft.server.main import run_server

        return run_server(args)
    if args.command == "playground":
        from multiraft.server.playground import run_playground

        return run_playground(args)
    if args.command == "ctl":
        from multiraft.server.ctl import run_ctl

        return run_ctl(args)
    if args.command == "kv":
        from multiraft.client.cli import run_kv

        return run_kv(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
