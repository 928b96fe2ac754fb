"""A tiny data-driven test runner (after cockroachdb/datadriven, used by etcd-io/raft).

A test file is a list of stanzas:

    command arg1=value arg2=(a,b,c)
    optional input line
    ----
    expected output
    (a blank line ends the stanza)

`run_file(path, handler)` calls `handler(TestData)` for each stanza and compares the returned
text with the expected output. With MULTIRAFT_REWRITE=1 the file is rewritten with the actual
outputs instead (review the diff before committing!).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TestData", "parse_file", "run_file"]


@dataclass
class TestData:
    """One stanza."""

    __test__ = False  # not a pytest test class

    pos: str
    cmd: str
    args: dict[str, list[str]] = field(default_factory=dict)
    input: str = ""
    expected: str = ""

    def arg(self, key: str, default: str | None = None) -> str:
        vals = self.args.get(key)
        if not vals:
            if default is None:
                raise KeyError(f"{self.pos}: missing argument {key}")
            return default
        return vals[0]

    def has(self, key: str) -> bool:
        return key in self.args


def _parse_args(tokens: list[str]) -> dict[str, list[str]]:
    args: dict[str, list[str]] = {}
    for tok in tokens:
        if "=" not in tok:
            args[tok] = []
            continue
        k, v = tok.split("=", 1)
        if v.startswith("(") and v.endswith(")"):
            inner = v[1:-1]
            args[k] = [x.strip() for x in inner.split(",")] if inner.strip() else []
        else:
            args[k] = [v]
    return args


def parse_file(path: Path) -> list[TestData]:
    lines = path.read_text().splitlines()
    out: list[TestData] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        start = i + 1
        tokens = line.split()
        td = TestData(pos=f"{path.name}:{start}", cmd=tokens[0], args=_parse_args(tokens[1:]))
        i += 1
        inp = []
        while i < len(lines) and lines[i] != "----":
            inp.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"{td.pos}: missing ---- separator")
        i += 1
        exp = []
        while i < len(lines) and lines[i].strip() != "":
            exp.append(lines[i])
            i += 1
        td.input = "\n".join(inp)
        td.expected = "\n".join(exp)
        out.append(td)
    return out


def _render(tds: list[TestData]) -> str:
    chunks = []
    for td in tds:
        head = td.cmd + "".join(
            " " + (k if not v and k in td.args else f"{k}=({','.join(v)})" if len(v) != 1 else f"{k}={v[0]}")
            for k, v in td.args.items()
        )
        body = head + ("\n" + td.input if td.input else "") + "\n----\n" + td.expected
        chunks.append(body)
    return "\n\n".join(chunks) + "\n"


def run_file(path: Path, handler: Callable[[TestData], str]) -> None:
    """Run every stanza; raise AssertionError listing the mismatches (with diffs)."""
    tds = parse_file(path)
    rewrite = os.environ.get("MULTIRAFT_REWRITE") == "1"
    failures = []
    for td in tds:
        got = handler(td).rstrip("\n")
        if got != td.expected:
            if rewrite:
                td.expected = got
                continue
            diff = "\n".join(
                difflib.unified_diff(td.expected.splitlines(), got.splitlines(), "expected", "got", lineterm="")
            )
            failures.append(f"{td.pos}: {td.cmd}\n{diff}")
    if rewrite:
        path.write_text(_render(tds))
        return
    if failures:
        raise AssertionError("\n\n".join(failures))
