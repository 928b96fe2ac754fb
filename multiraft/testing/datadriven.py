"""A tiny data-driven test runner (after cockroachdb/datadriven, used by etcd-io/raft and
raft-rs for their `testdata/*.txt` tables).

A test file is a sequence of stanzas; `#` lines and blank lines between stanzas are comments:

    # a comment
    command arg1=value arg2=(a,b,c) flag
    optional input line(s)
    ----
    expected output
    (the first blank line ends it)

An expected output that contains blank lines is written between double separators:

    command
    ----
    ----
    first paragraph

    second paragraph
    ----
    ----

`run_file(path, handler)` calls `handler(TestData)` for every stanza in order and compares the
text it returns (trailing newlines ignored) with the expected output; mismatches are reported
together, each with a unified diff. With `MULTIRAFT_REWRITE=1` in the environment the file is
rewritten in place with the actual outputs instead (comments and layout are kept): review the
diff before committing!
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TestData", "parse_file", "parse_args", "run_file", "REWRITE_ENV"]

REWRITE_ENV = "MULTIRAFT_REWRITE"
_SEP = "----"


@dataclass
class TestData:
    """One stanza: `cmd`, its arguments, its input and the expected output."""

    __test__ = False  # not a pytest test class

    # "file.txt:LINE" of the command line, for messages.
    pos: str
    cmd: str
    # key -> values: `k=v` gives [v], `k=(a,b)` gives [a, b], `k=()` and a bare `k` give [].
    args: dict[str, list[str]] = field(default_factory=dict)
    input: str = ""
    expected: str = ""
    # The 0-based line range [start, end) of the expected output block in the file, including
    # its separators (used by the rewrite).
    _out_span: tuple[int, int] = (0, 0)

    def arg(self, key: str, default: str | None = None) -> str:
        """The first value of `key`; `default` if absent (KeyError if no default)."""
        vals = self.args.get(key)
        if not vals:
            if default is None:
                raise KeyError(f"{self.pos}: missing argument {key}")
            return default
        return vals[0]

    def int_list(self, key: str) -> list[int]:
        """The values of `key` as ints ([] if absent)."""
        return [int(v) for v in self.args.get(key, [])]

    def has(self, key: str) -> bool:
        return key in self.args


def _split_args(line: str) -> list[str]:
    """Split on spaces, except inside parentheses: "a=(1, 2) b" -> ["a=(1, 2)", "b"]."""
    tokens: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in line:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch.isspace() and depth == 0:
            if cur:
                tokens.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if cur:
        tokens.append("".join(cur))
    return tokens


def parse_args(tokens: list[str]) -> dict[str, list[str]]:
    """Parse `k`, `k=v` and `k=(a,b,c)` tokens (values are stripped)."""
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
    """Parse every stanza of `path` (ValueError on a malformed file)."""
    lines = path.read_text().splitlines()
    out: list[TestData] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        tokens = _split_args(line)
        td = TestData(pos=f"{path.name}:{i + 1}", cmd=tokens[0], args=parse_args(tokens[1:]))
        i += 1
        inp: list[str] = []
        while i < n and lines[i] != _SEP:
            inp.append(lines[i])
            i += 1
        if i >= n:
            raise ValueError(f"{td.pos}: missing {_SEP} separator")
        start = i
        i += 1
        exp: list[str] = []
        if i < n and lines[i] == _SEP:
            # Double separator: the output runs to the closing "----\n----".
            i += 1
            while i + 1 < n and not (lines[i] == _SEP and lines[i + 1] == _SEP):
                exp.append(lines[i])
                i += 1
            if i + 1 >= n:
                raise ValueError(f"{td.pos}: unterminated {_SEP}/{_SEP} block")
            i += 2
        else:
            while i < n and lines[i].strip() != "":
                exp.append(lines[i])
                i += 1
        td.input = "\n".join(inp)
        td.expected = "\n".join(exp)
        td._out_span = (start, i)
        out.append(td)
    return out


def _render_output(text: str) -> list[str]:
    if "\n\n" in text or text.startswith("\n"):
        return [_SEP, _SEP, *text.split("\n"), _SEP, _SEP]
    return [_SEP, *text.split("\n")] if text else [_SEP]


def _rewrite(path: Path, tds: list[TestData], outputs: list[str]) -> None:
    lines = path.read_text().splitlines()
    # Replace from the bottom up so that earlier spans stay valid.
    for td, got in reversed(list(zip(tds, outputs, strict=True))):
        start, end = td._out_span
        lines[start:end] = _render_output(got)
    path.write_text("\n".join(lines) + "\n")


def run_file(path: Path, handler: Callable[[TestData], str]) -> None:
    """Run every stanza of `path` through `handler`; raise AssertionError listing every
    mismatch with a diff (or rewrite the file if MULTIRAFT_REWRITE=1)."""
    tds = parse_file(path)
    rewrite = os.environ.get(REWRITE_ENV) == "1"
    outputs: list[str] = []
    failures: list[str] = []
    for td in tds:
        try:
            got = handler(td).rstrip("\n")
        except Exception as e:
            e.add_note(f"while running {td.pos}: {td.cmd}")
            raise
        outputs.append(got)
        if got != td.expected:
            diff = "\n".join(
                difflib.unified_diff(
                    td.expected.splitlines(), got.splitlines(), "expected", "got", lineterm=""
                )
            )
            failures.append(f"{td.pos}: {td.cmd}\n{diff}")
    if rewrite:
        if failures:
            _rewrite(path, tds, outputs)
        return
    if failures:
        raise AssertionError(
            f"{len(failures)} of {len(tds)} stanzas of {path.name} differ "
            f"(set {REWRITE_ENV}=1 to rewrite):\n\n" + "\n\n".join(failures)
        )
