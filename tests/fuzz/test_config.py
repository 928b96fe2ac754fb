"""Fuzz the server configuration (multiraft/server/config.py): TOML files (valid ones mutated,
garbage values, random bytes) and command-line flag values (strings, as argparse gives them).
`load_config` returns a configuration the server can use, or raises ConfigError with a
one-line message (what the CLI prints before exiting with status 2) — nothing else."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.proto.serverpb_pb2 import Handshake
from multiraft.server.config import ConfigError, ServerConfig, load_config

from .support import (
    byte_variants,
    fan_out,
    fuzz_settings,
    guard,
    mutate_bytes,
    mutated,
    mutated_tree,
    run_inputs,
    seeds,
    tree_variants,
)

FIELDS = {f.name: f.type for f in fields(ServerConfig) if not f.name.startswith("_")}


def _toml_value(v: Any) -> str:
    """A TOML rendering of a JSON-like value (strings as JSON strings: TOML basic strings
    take the same escapes, except the ones TOML refuses, which is fine here)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) else json.dumps(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def to_toml(doc: Any) -> bytes:
    if not isinstance(doc, dict):
        return f"value = {_toml_value(doc)}\n".encode()
    return "".join(f"{json.dumps(str(k))} = {_toml_value(v)}\n" for k, v in doc.items()).encode()


def _value_for(typ: Any) -> st.SearchStrategy[Any]:
    name = typ if isinstance(typ, str) else typ.__name__
    if name == "int":
        return st.one_of(st.integers(0, 30), st.integers(-(2**70), 2**70))
    if name == "bool":
        return st.booleans()
    return st.one_of(
        st.sampled_from(["127.0.0.1:20160", "[::1]:1", "1=127.0.0.1:1,2=127.0.0.1:2", "json"]),
        st.text(max_size=16),
    )


config_docs = st.lists(
    st.sampled_from([*sorted(FIELDS), "no_such_key"]).flatmap(
        lambda k: st.tuples(
            st.sampled_from([k, k.replace("_", "-")]), _value_for(FIELDS.get(k, "str"))
        )
    ),
    max_size=6,
).map(dict)
toml_inputs = st.one_of(
    config_docs.map(to_toml),
    mutated(config_docs.map(to_toml)),
    mutated_tree(config_docs, json_only=True).map(to_toml),
    st.binary(max_size=200),
)


@pytest.fixture(scope="module")
def config_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d) / "store.toml"


def _check_loaded(call: Any, size: int) -> None:
    with guard(size):
        try:
            c = call()
        except ConfigError as e:
            assert "\n" not in str(e) and "\r" not in str(e), repr(str(e))
            return
    # What the server does with it first must work.
    Handshake(cluster_id=c.cluster_id, store_id=c.store_id)
    for sid, (host, port) in c.peers().items():
        assert 0 < sid < 1 << 24 and isinstance(host, str) and 0 < port < 65536


@fuzz_settings(2000, families=2)
@given(toml_inputs, config_docs, seeds)
def test_config_file(config_path: Path, data: bytes, doc: dict[str, Any], seed: int) -> None:
    def check(data: bytes) -> None:
        config_path.write_bytes(data)
        _check_loaded(lambda: load_config(config_path), len(data))

    def variants() -> Iterator[bytes]:
        yield from byte_variants(data, seed)
        yield from tree_variants(doc, seed + 1, to_toml, json_only=True)

    run_inputs("server.config.load_config(file)", variants(), check)


flag_values = st.dictionaries(
    st.sampled_from(sorted(FIELDS)),
    st.one_of(
        st.none(),
        st.sampled_from(["0", "1", "-1", "2", "true", "no", "\u00b2", "\u0663", "1_0", " 7 ",
                         "99999999999999999999999", "9" * 5000, "127.0.0.1:1", "h:\u00b2",
                         "1=h:1,\u00b2=h:2", "1=h:1\n,2=h:2", "0=h:1", "1=[::1:5"]),
        st.text(max_size=16),
    ),
    max_size=5,
)


@fuzz_settings(2000)
@given(flag_values, seeds)
def test_config_flags(flags: dict[str, str | None], seed: int) -> None:
    def check(data: bytes) -> None:
        overrides: dict[str, Any] = json.loads(data)
        _check_loaded(lambda: load_config(None, overrides), len(data))

    def variants() -> Iterator[bytes]:
        # The flag values, then seeded mutations of one value's bytes (argv is decoded with
        # surrogateescape: undecodable bytes arrive as lone surrogates).
        yield json.dumps(flags).encode()
        rng = random.Random(seed)
        for _ in range(fan_out()):
            mutant = dict(flags)
            key = rng.choice(sorted(FIELDS))
            raw = (mutant.get(key) or "").encode("utf-8", "surrogateescape")
            mutant[key] = mutate_bytes(rng, raw).decode("utf-8", "surrogateescape")
            yield json.dumps(mutant).encode()

    run_inputs("server.config.load_config(flags)", variants(), check)



# -- inputs the fuzzing found (and their neighbours) -------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xacL\t\xc2\x82\x06\xe7\xe3", "not UTF-8"),  # UnicodeDecodeError escaped
        (b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),  # RecursionError
        (b"store_id = " + b"9" * 5000, "4300 digits"),  # ValueError of int()
        # A hexadecimal integer has no digit limit: the message could not even print it.
        (b"store_id = 0x" + b"f" * 5000, "store_id must be in [0, 2**63), got a 20000-bit"),
        (b"cluster_id = 99999999999999999999999", "cluster_id must be in [0, 2**63)"),
        (b'data_dir = "a\\u0000b"', "data_dir must not contain a NUL"),
    ],
    ids=["not-utf8", "deep", "5000-digits", "hex-20000-bits", "cluster-id-2**76", "nul"],
)
def test_regression_config_file(config_path: Path, data: bytes, message: str) -> None:
    config_path.write_bytes(data)
    with pytest.raises(ConfigError) as e:
        load_config(config_path)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"client_addr": "h:\u00b2"}, "expected host:port"),  # int("\u00b2"): ValueError
        ({"initial_cluster": "\u00b2=h:1"}, "expected id=host:port"),
        ({"initial_cluster": "0=h:1"}, "store id 0 not in"),
        ({"initial_cluster": "2=h:1\n"}, "store_id 1 is not in initial_cluster ('2=h:1\\n')"),
        ({"raft_log_gc_keep": "-5"}, "raft_log_gc_keep must be in [0, 2**63)"),
    ],
    ids=["port-superscript", "store-superscript", "store-0", "newline", "negative"],
)
def test_regression_config_flags(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, flags)
    assert message in str(e.value) and "\n" not in str(e.value)
