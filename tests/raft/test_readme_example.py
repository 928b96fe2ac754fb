"""The README's example runs as written: the test executes the README's own text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from multiraft import EntryType, Message, StateRole
from multiraft.examples.three_nodes import run

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_example() -> str:
    """The Python block of the README's "The raft core in one page" section."""
    text = README.read_text()
    section = text[text.index("## The raft core in one page"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_readme_example_uses_the_crate_paths() -> None:
    code = _readme_example()
    assert "from multiraft.storage import MemStorage" in code
    assert "from multiraft.raw_node import RawNode" in code


def test_readme_single_node_example() -> None:
    sent: list[Message] = []
    applied: list[bytes] = []

    def send(msgs: list[Message]) -> None:
        sent.extend(msgs)

    def apply(entries: list) -> None:  # type: ignore[type-arg]
        for e in entries:
            if e.entry_type == EntryType.EntryNormal and e.data:
                applied.append(e.data)

    namespace: dict[str, Any] = {"send": send, "apply": apply}
    exec(compile(_readme_example(), str(README), "exec"), namespace)
    node, storage = namespace["node"], namespace["storage"]

    assert applied == [b"some data"]
    assert node.raft.state == StateRole.Leader
    assert sent == []  # a single voter talks to nobody
    assert storage.rl().hard_state().commit == node.raft.raft_log.committed == 2
    assert node.raft.raft_log.applied == 2
    assert not node.has_ready()


def test_three_node_example_applies_everything_everywhere() -> None:
    out: list[str] = []
    applied = run(entries=7, seed=3, out=out)
    expected = [f"entry-{i}".encode() for i in range(7)]
    assert applied == {1: expected, 2: expected, 3: expected}
    assert len(out) == 3 and all("applied: entry-0" in line for line in out)
