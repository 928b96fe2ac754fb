"""The `multiraft` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multiraft", description="A multi-raft storage node.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser(
        "example", help="drive a 3-node in-memory Raft group and print what each node applied"
    )
    ex.add_argument("--entries", type=int, default=5, help="how many entries to propose")
    ex.add_argument("--seed", type=int, default=1, help="seed of the election timeouts")
    args = parser.parse_args(argv)
    if args.command == "example":
        from multiraft.examples.three_nodes import run

        run(args.entries, args.seed)
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
