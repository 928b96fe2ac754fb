"""The house's walls (docs/architecture.md, "Import rules"), the public surface, and that every module
imports on its own."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "multiraft" / "raft"

# multiraft.raft may import only the standard library and multiraft.proto, and never these.
FORBIDDEN = {"asyncio", "uvloop", "socket", "time", "os", "threading", "random", "prometheus_client",
             "selectors", "subprocess", "multiprocessing", "concurrent", "datetime"}
ALLOWED_THIRD_PARTY = {"google"}  # protobuf runtime, used by the generated eraftpb code


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_only_stdlib_and_proto(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}, forbidden in the core"
        if top == "multiraft":
            assert name.startswith(("multiraft.raft", "multiraft.proto")), (
                f"{path.name} imports {name}: the core may only import multiraft.proto"
            )
        else:
            assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, (
                f"{path.name} imports third-party {name}"
            )


def test_core_imports_no_forbidden_module_at_runtime() -> None:
    """Importing the core must not pull a forbidden module in transitively (threading comes
    with the stdlib logging module, so only the static check above covers it)."""
    code = (
        "import sys; import multiraft.raft; "
        "bad = sorted(m for m in ('asyncio', 'uvloop', 'socket', 'prometheus_client') "
        "if m in sys.modules); print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def _all_modules() -> list[str]:
    mods = []
    for pkg in ("multiraft", "router", "metrics"):
        base = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(base.__path__, pkg + "."):
            mods.append(info.name)
    return sorted(mods)


@pytest.mark.parametrize("module", _all_modules())
def test_every_module_imports_alone(module: str) -> None:
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)


RAFT_RS_NAMES = """
eraftpb Config Storage MemStorage RawNode Ready LightReady ReadState SoftState Status Progress
ProgressState ProgressTracker ProgressSet Inflights Peer SnapshotStatus Raft RaftLog Unstable
RaftState StateRole ReadOnlyOption Error StepLocalMsg StepPeerNotFound ProposalDropped
ConfigInvalid RequestSnapshotDropped StorageError Compacted Unavailable SnapshotOutOfDate
SnapshotTemporarilyUnavailable LogTemporarilyUnavailable INVALID_ID INVALID_INDEX NO_LIMIT
is_empty_snap quorum vote_resp_msg_type Message MessageType Entry EntryType HardState ConfState
Snapshot SnapshotMetadata ConfChange ConfChangeType ConfChangeSingle ConfChangeV2
ConfChangeTransition Changer MapChange CAMPAIGN_ELECTION CAMPAIGN_PRE_ELECTION CAMPAIGN_TRANSFER
GetEntriesContext JointConfig MajorityConfig LightReady majority default_logger StatusRef
""".split()


@pytest.mark.parametrize("name", RAFT_RS_NAMES)
def test_public_names_exist(name: str) -> None:
    import multiraft
    import multiraft.raft

    assert hasattr(multiraft.raft, name), name
    assert hasattr(multiraft, name), name
    assert name in multiraft.raft.__all__


def test_eraftpb_module_names() -> None:
    from multiraft.raft import eraftpb

    for name in ("Message", "MessageType", "Entry", "EntryType", "HardState", "ConfState",
                 "Snapshot", "SnapshotMetadata", "ConfChange", "ConfChangeType",
                 "ConfChangeSingle", "ConfChangeV2", "ConfChangeTransition"):
        assert hasattr(eraftpb, name)
    m = eraftpb.Message(msg_type=eraftpb.MessageType.MsgAppend, to=2, from_=1, term=3,
                        entries=[eraftpb.Entry(term=3, index=4, data=b"x")])
    back = eraftpb.Message()
    back.ParseFromString(m.SerializeToString())
    assert back == m and back.from_ == 1 and back.entries[0].data == b"x"
