"""The raft crate's paths: every module and item the crate's docs list imports from `multiraft`
under the crate's name and path (`raft::storage::MemStorage` is `multiraft.storage.MemStorage`),
as the same object the core defines, and the crate's example runs as transliterated."""

from __future__ import annotations

import importlib
import inspect
import logging
import types
from typing import Any

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

import multiraft
import multiraft.raft

# The items of raft-rs 0.7 (`src/lib.rs` and its public modules), by module path ("" is the
# crate root), each with its kind in the docs.
CRATE_ITEMS: dict[str, dict[str, str]] = {
    "": {
        "eraftpb": "mod",
        "prelude": "mod",
        "raw_node": "mod",
        "storage": "mod",
        "util": "mod",
        "Changer": "struct",
        "Config": "struct",
        "GetEntriesContext": "struct",
        "Inflights": "struct",
        "JointConfig": "struct",
        "LightReady": "struct",
        "MajorityConfig": "struct",
        "Peer": "struct",
        "Progress": "struct",
        "ProgressTracker": "struct",
        "Raft": "struct",
        "RaftLog": "struct",
        "RaftState": "struct",
        "RawNode": "struct",
        "ReadState": "struct",
        "Ready": "struct",
        "SoftState": "struct",
        "Status": "struct",
        "Unstable": "struct",
        "Error": "enum",
        "ProgressState": "enum",
        "ReadOnlyOption": "enum",
        "SnapshotStatus": "enum",
        "StateRole": "enum",
        "StorageError": "enum",
        "Storage": "trait",
        "CAMPAIGN_ELECTION": "const",
        "CAMPAIGN_PRE_ELECTION": "const",
        "CAMPAIGN_TRANSFER": "const",
        "INVALID_ID": "const",
        "INVALID_INDEX": "const",
        "NO_LIMIT": "const",
        "default_logger": "fn",
        "is_empty_snap": "fn",
        "majority": "fn",
        "vote_resp_msg_type": "fn",
        "MapChange": "type",
    },
    "eraftpb": {
        "ConfChange": "struct",
        "ConfChangeSingle": "struct",
        "ConfChangeV2": "struct",
        "ConfState": "struct",
        "Entry": "struct",
        "HardState": "struct",
        "Message": "struct",
        "Snapshot": "struct",
        "SnapshotMetadata": "struct",
        "ConfChangeTransition": "enum",
        "ConfChangeType": "enum",
        "EntryType": "enum",
        "MessageType": "enum",
    },
    "prelude": {
        # raft_proto::prelude: the eraftpb types.
        "ConfChange": "struct",
        "ConfChangeSingle": "struct",
        "ConfChangeTransition": "enum",
        "ConfChangeType": "enum",
        "ConfChangeV2": "struct",
        "ConfState": "struct",
        "Entry": "struct",
        "EntryType": "enum",
        "HardState": "struct",
        "Message": "struct",
        "MessageType": "enum",
        "Snapshot": "struct",
        "SnapshotMetadata": "struct",
        # The crate's own.
        "Config": "struct",
        "Raft": "struct",
        "RaftState": "struct",
        "Storage": "trait",
        "Peer": "struct",
        "RawNode": "struct",
        "Ready": "struct",
        "SnapshotStatus": "enum",
        "Progress": "struct",
        "Status": "struct",
        "ReadOnlyOption": "enum",
        "ReadState": "struct",
    },
    "raw_node": {
        "LightReady": "struct",
        "Peer": "struct",
        "RawNode": "struct",
        "Ready": "struct",
        "SnapshotStatus": "enum",
        "is_empty_snap": "fn",
        "is_local_msg": "fn",
    },
    "storage": {
        "GetEntriesContext": "struct",
        "MemStorage": "struct",
        "MemStorageCore": "struct",
        "RaftState": "struct",
        "Storage": "trait",
    },
    "util": {
        "Union": "struct",
        "NO_LIMIT": "const",
        "entry_approximate_size": "fn",
        "is_continuous_ents": "fn",
        "limit_size": "fn",
        "majority": "fn",
    },
}

# Items of the crate's docs before 0.6, still looked for by readers of older docs and examples.
LEGACY_ITEMS: dict[str, dict[str, str]] = {
    "": {
        "quorum": "fn",  # raft::quorum(total), `majority` since 0.6
        "StatusRef": "struct",  # the borrowed status; 0.5 made `Status` borrowed and dropped it
        "ProgressSet": "struct",  # `ProgressTracker` since 0.6
    },
    "prelude": {"StatusRef": "struct"},
}

# Items of the crate's docs deliberately not provided, with the reason.
EXCLUDED: dict[str, str] = {
    "Result": "a Rust type alias, `std::result::Result<T, raft::Error>`: the Python core "
    "returns values and raises `Error` subclasses instead",
}

# Where each item is defined in the core: the crate's path must give this very object.
CORE_MODULE = {"eraftpb": "multiraft.raft.eraftpb"}

ALL_ITEMS = [
    (mod, name, kind)
    for table in (CRATE_ITEMS, LEGACY_ITEMS)
    for mod, items in table.items()
    for name, kind in items.items()
]


def _path(mod: str) -> str:
    return f"multiraft.{mod}" if mod else "multiraft"


def _is_kind(obj: Any, kind: str) -> bool:
    if kind == "mod":
        return isinstance(obj, types.ModuleType)
    if kind in ("struct", "trait"):
        return inspect.isclass(obj)
    if kind == "enum":  # an enum.Enum, the Error class family, or a protobuf enum
        return inspect.isclass(obj) or isinstance(obj, EnumTypeWrapper)
    if kind == "const":
        return isinstance(obj, int | bytes)
    if kind == "fn":
        return inspect.isfunction(obj)
    if kind == "type":
        return obj is not None
    raise AssertionError(f"unknown kind {kind}")


@pytest.mark.parametrize(("mod", "name", "kind"), ALL_ITEMS,
                         ids=[f"{_path(m)}.{n}" for m, n, _ in ALL_ITEMS])
def test_crate_item_imports_under_its_path(mod: str, name: str, kind: str) -> None:
    module = importlib.import_module(_path(mod))
    assert hasattr(module, name), f"{_path(mod)}.{name} is missing"
    obj = getattr(module, name)
    assert _is_kind(obj, kind), f"{_path(mod)}.{name} is {obj!r}, not a {kind}"
    assert name in module.__all__, f"{name} not in {_path(mod)}.__all__"
    namespace: dict[str, Any] = {}
    exec(f"from {_path(mod)} import {name}", namespace)
    assert namespace[name] is obj


@pytest.mark.parametrize("mod", [m for m in CRATE_ITEMS if m])
def test_crate_module_is_a_module_of_its_own(mod: str) -> None:
    """`import multiraft.storage` works alone, it is the root's attribute, and it exports the
    crate module's items exactly."""
    module = importlib.import_module(f"multiraft.{mod}")
    assert getattr(multiraft, mod) is module
    assert module.__doc__ and "raft-rs" in module.__doc__
    expected = set(CRATE_ITEMS[mod]) | set(LEGACY_ITEMS.get(mod, {}))
    assert set(module.__all__) == expected


@pytest.mark.parametrize(("mod", "name", "kind"), [i for i in ALL_ITEMS if i[2] != "mod"],
                         ids=[f"{_path(m)}.{n}" for m, n, k in ALL_ITEMS if k != "mod"])
def test_crate_item_is_the_core_object(mod: str, name: str, kind: str) -> None:
    """Re-exports, not copies: the crate's path gives the object `multiraft.raft` defines."""
    obj = getattr(importlib.import_module(_path(mod)), name)
    core = importlib.import_module(CORE_MODULE.get(mod, "multiraft.raft"))
    if not hasattr(core, name) or name == "quorum":
        core = multiraft.raft.util
    assert getattr(core, name) is obj


def test_excluded_items_are_not_provided() -> None:
    assert not set(EXCLUDED) & {n for _, n, _ in ALL_ITEMS}
    for name in EXCLUDED:
        assert not hasattr(multiraft, name)


def test_prelude_star_import() -> None:
    namespace: dict[str, Any] = {}
    exec("from multiraft.prelude import *", namespace)
    namespace.pop("__builtins__")
    expected = set(CRATE_ITEMS["prelude"]) | set(LEGACY_ITEMS["prelude"])
    assert set(namespace) == expected
    assert namespace["RawNode"] is multiraft.RawNode and namespace["Message"] is multiraft.Message


def test_root_exports_the_core_surface() -> None:
    """Every public name of multiraft.raft is the root's too: the same object, except the
    core's `quorum` package (the root's `quorum` is the crate's function) and its `eraftpb`
    module (the root's has the same contents)."""
    for name in multiraft.raft.__all__:
        assert name in multiraft.__all__, name
        if name not in ("eraftpb", "quorum"):
            assert getattr(multiraft, name) is getattr(multiraft.raft, name), name
    for name in multiraft.raft.eraftpb.__all__:
        assert getattr(multiraft.eraftpb, name) is getattr(multiraft.raft.eraftpb, name)


def test_quorum_is_the_crates_function() -> None:
    """raft::quorum: "Calculate the quorum of a Raft cluster with the specified total nodes",
    while the core's `quorum` package keeps its configurations."""
    assert [multiraft.quorum(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
    assert all(multiraft.quorum(n) == multiraft.majority(n) for n in range(100))
    from multiraft.raft.quorum import JointConfig, MajorityConfig

    assert isinstance(multiraft.raft.quorum, types.ModuleType)
    assert multiraft.raft.quorum.MajorityConfig is MajorityConfig is multiraft.MajorityConfig
    assert JointConfig is multiraft.JointConfig


def test_status_ref_is_status() -> None:
    """`StatusRef` is `Status`, which already refers to the leader's live tracker."""
    from multiraft.raw_node import RawNode
    from multiraft.storage import MemStorage

    assert multiraft.StatusRef is multiraft.Status
    node = RawNode(multiraft.Config(id=1), MemStorage.new_with_conf_state(([1], [])))
    node.raft.become_candidate()
    node.raft.become_leader()
    status = node.status()
    assert isinstance(status, multiraft.StatusRef)
    assert status.progress is node.raft.prs


def test_default_logger_is_the_cores_fallback() -> None:
    from multiraft.raw_node import RawNode
    from multiraft.storage import MemStorage

    logger = multiraft.default_logger()
    assert isinstance(logger, logging.Logger)
    node = RawNode(multiraft.Config(id=1), MemStorage.new_with_conf_state(([1], [])))
    assert node.raft.logger.logger is logger


def test_crate_doc_example() -> None:
    """The crate docs' "Creating a Raft node", transliterated:

        use raft::{Config, storage::MemStorage, raw_node::RawNode};
        let config = Config { id: 1, ..Default::default() };
        config.validate().unwrap();
        let storage = MemStorage::new_with_conf_state((vec![1], vec![]));
        let mut node = RawNode::new(&config, storage, &logger).unwrap();
    """
    from multiraft import Config, default_logger
    from multiraft.eraftpb import EntryType
    from multiraft.raw_node import RawNode
    from multiraft.storage import MemStorage

    config = Config(id=1)
    config.validate()
    storage = MemStorage.new_with_conf_state(([1], []))
    node = RawNode(config, storage, logger=default_logger())
    node.raft.become_candidate()
    node.raft.become_leader()
    node.propose(b"", b"\x01")
    rd = node.ready()
    node.mut_store().wl().append(rd.entries)
    light = node.advance(rd)
    committed = [e for e in light.take_committed_entries() if e.entry_type == EntryType.EntryNormal]
    assert [e.data for e in committed] == [b"", b"\x01"]
