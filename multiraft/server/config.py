"""The server's configuration: defaults, a TOML file (`--config`), command-line flags (flags
win), and validation with one clear message per problem.

Keys use the flag names with underscores (`store_id`, `data_dir`, `client_addr`,
`advertise_client_addr`, ...); raft and store tunables live in the same flat namespace. An
unknown key, a bad address, a store id missing from `initial_cluster` or a data dir of another
cluster/store is a `ConfigError`, which the CLI prints as one line before exiting with
status 2.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from multiraft.store.base import MAX_INITIAL_REGIONS

__all__ = [
    "ConfigError", "ServerConfig", "parse_addr", "parse_initial_cluster", "load_config",
    "WILDCARD_HOSTS",
]


class ConfigError(ValueError):
    """Invalid configuration; the message is meant for an operator, on one line."""


@dataclass
class ServerConfig:
    store_id: int = 1
    data_dir: str = "./multiraft-data"
    client_addr: str = "127.0.0.1:20160"
    peer_addr: str = "127.0.0.1:20161"
    admin_addr: str = "127.0.0.1:20180"
    # What this store tells other stores and clients it is reachable at (the peer handshake,
    # the client protocol's `regions` answer and NOT_LEADER hints, /status), when that is not
    # the address it listens on (NAT, containers, a wildcard listen address). Empty: the
    # listen address (a wildcard host in it is then replaced, by whoever learns it, with the
    # host its peer address was reached at).
    advertise_client_addr: str = ""
    advertise_peer_addr: str = ""
    advertise_admin_addr: str = ""
    # "1=127.0.0.1:20161,2=127.0.0.1:20171"; empty: this store alone.
    initial_cluster: str = ""
    # Join a running cluster instead of bootstrapping one: `initial_cluster` then lists stores
    # to contact (this store need not be among them); regions arrive as the admin API adds
    # replicas here.
    join: bool = False
    initial_regions: int = 1
    cluster_id: int = 1
    admin_token: str = ""
    log_format: str = "human"
    log_level: str = "info"
    # Raft and store tunables (their defaults: docs/architecture.md, "Defaults, and why").
    base_tick_ms: int = 100
    heartbeat_ticks: int = 2
    election_ticks: int = 10
    # Another store silent this long (ticks; 0: three election timeouts) is suspected down:
    # the hibernated regions it led elect new leaders (docs/architecture.md, "Defaults, and
    # why").
    store_suspect_ticks: int = 0
    check_quorum: bool = True
    pre_vote: bool = True
    lease_reads: bool = False
    max_frame_bytes: int = 64 << 20
    raft_log_gc_keep: int = 1000
    # Automatic split and merge (docs/operations.md, "Splitting and merging regions"): a
    # region splits in two once over `region_split_size` bytes or `region_split_keys` keys
    # (0: never), or once it serves more than `region_split_qps` requests per second for a
    # few seconds (0: never); a region below both merge thresholds merges into an adjacent
    # one on the same stores, unless `auto_merge` is off, once neither was split or merged
    # for `split_merge_interval_s` seconds.
    region_split_size: int = 96 << 20
    region_split_keys: int = 960_000
    region_split_qps: int = 0
    auto_merge: bool = True
    region_merge_size: int = 20 << 20
    region_merge_keys: int = 200_000
    split_merge_interval_s: int = 3600
    # Overload: client requests waiting in the store at once before more are refused with
    # SERVER_BUSY (0: no limit).
    max_pending_requests: int = 1024
    # Move leaders away from a store that leads clearly more regions than its share.
    leader_balance: bool = True
    fsync: bool = True
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    _peers: dict[int, tuple[str, int]] = field(default_factory=dict, repr=False)

    def peers(self) -> dict[int, tuple[str, int]]:
        """Store id -> peer address of the initial cluster (validated)."""
        return dict(self._peers)

    def suspect_ticks(self) -> int:
        """`store_suspect_ticks`, or its default."""
        return self.store_suspect_ticks or 3 * self.election_ticks

    def validate(self) -> ServerConfig:
        for name, f in _FIELDS.items():
            v = getattr(self, name)
            if f.type in ("int", int) and not 0 <= v < 1 << 63:
                raise ConfigError(f"{name} must be in [0, 2**63), got {_show_int(v)}")
            if name in _PATHS and "\0" in v:
                raise ConfigError(f"{name} must not contain a NUL character, got {v!r}")
        if not 0 < self.store_id < 1 << 24:
            raise ConfigError(f"store_id must be in [1, {1 << 24}), got {self.store_id}")
        if self.cluster_id <= 0:
            raise ConfigError(f"cluster_id must be positive, got {self.cluster_id}")
        for name in ("client_addr", "peer_addr", "admin_addr"):
            parse_addr(getattr(self, name), name)
            advertised = getattr(self, "advertise_" + name)
            if advertised:
                host, _ = parse_addr(advertised, "advertise_" + name)
                if host in WILDCARD_HOSTS:
                    raise ConfigError(
                        f"advertise_{name} must be an address others can reach, not {advertised!r}"
                    )
        if not self.data_dir:
            raise ConfigError("data_dir must not be empty")
        if not 1 <= self.initial_regions <= MAX_INITIAL_REGIONS:
            raise ConfigError(
                f"initial_regions must be in [1, {MAX_INITIAL_REGIONS}], got {self.initial_regions}"
            )
        if self.log_format not in ("human", "json"):
            raise ConfigError(f"log_format must be 'human' or 'json', got {self.log_format!r}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level must be debug, info, warning or error, got {self.log_level!r}")
        if self.base_tick_ms <= 0 or self.heartbeat_ticks <= 0:
            raise ConfigError("base_tick_ms and heartbeat_ticks must be positive")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError(
                f"election_ticks ({self.election_ticks}) must be greater than heartbeat_ticks "
                f"({self.heartbeat_ticks})"
            )
        if self.store_suspect_ticks and self.store_suspect_ticks < self.election_ticks:
            raise ConfigError(
                f"store_suspect_ticks ({self.store_suspect_ticks}) must be at least election_ticks "
                f"({self.election_ticks})"
            )
        if self.lease_reads and not self.check_quorum:
            raise ConfigError("lease_reads requires check_quorum")
        for name in (
            "region_split_size", "region_split_keys", "region_split_qps", "region_merge_size",
            "region_merge_keys", "split_merge_interval_s",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        for merge, split in (("region_merge_size", "region_split_size"), ("region_merge_keys", "region_split_keys")):
            if self.auto_merge and getattr(self, split) and getattr(self, merge) >= getattr(self, split):
                raise ConfigError(
                    f"{merge} ({getattr(self, merge)}) must be below {split} "
                    f"({getattr(self, split)}): merged regions would split again"
                )
        if self.max_frame_bytes < 1 << 16:
            raise ConfigError("max_frame_bytes must be at least 65536")
        if bool(self.tls_cert) != bool(self.tls_key) or (self.tls_ca and not self.tls_cert):
            raise ConfigError("TLS needs tls_cert, tls_key and tls_ca together")
        if self.join and not self.initial_cluster:
            raise ConfigError("join needs initial_cluster: the stores of the running cluster")
        if self.initial_cluster:
            self._peers = parse_initial_cluster(self.initial_cluster)
            if self.join:
                self._peers.setdefault(self.store_id, parse_addr(self.advertised_peer_addr()))
            elif self.store_id not in self._peers:
                raise ConfigError(
                    f"store_id {self.store_id} is not in initial_cluster "
                    f"({self.initial_cluster!r})"
                )
        else:
            self._peers = {self.store_id: parse_addr(self.advertised_peer_addr())}
        return self

    def advertised_peer_addr(self) -> str:
        """The peer address other stores should dial: `advertise_peer_addr` or `peer_addr`."""
        return self.advertise_peer_addr or self.peer_addr


_FIELDS = {f.name: f for f in fields(ServerConfig) if not f.name.startswith("_")}
# Options naming files or directories (opened later: a NUL in them cannot be).
_PATHS = frozenset({"data_dir", "tls_cert", "tls_key", "tls_ca"})


def _show_int(v: int) -> str:
    """`v` for a message (an integer of thousands of digits has no str: Python refuses to
    convert it)."""
    return str(v) if abs(v) < 1 << 256 else f"a {v.bit_length()}-bit integer"
# Listen-on-everything hosts: fine to listen on, meaningless to dial.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def parse_addr(addr: str, what: str = "address") -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port)."""
    host, sep, port_s = addr.rpartition(":")
    if not sep or not host or not (port_s.isascii() and port_s.isdigit()):
        raise ConfigError(f"{what}: expected host:port, got {addr!r}")
    port = int(port_s)
    if not 0 < port < 65536:
        raise ConfigError(f"{what}: port out of range in {addr!r}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"{what}: bad IPv6 address in {addr!r}")
        host = host[1:-1]
    return host, port


def parse_initial_cluster(spec: str) -> dict[int, tuple[str, int]]:
    """`1=host:port,2=host:port` -> {1: (host, port), ...}."""
    out: dict[int, tuple[str, int]] = {}
    for part in spec.split(","):
        part = part.strip()
        sid, sep, addr = part.partition("=")
        sid = sid.strip()
        if not sep or not (sid.isascii() and sid.isdigit()):
            raise ConfigError(f"initial_cluster: expected id=host:port, got {part!r}")
        store = int(sid)
        if not 0 < store < 1 << 24:
            raise ConfigError(f"initial_cluster: store id {store} not in [1, {1 << 24})")
        if store in out:
            raise ConfigError(f"initial_cluster: store {store} listed twice")
        out[store] = parse_addr(addr.strip(), f"initial_cluster store {store}")
    return out


def _coerce(name: str, value: Any) -> Any:
    typ = _FIELDS[name].type
    want = {"int": int, "str": str, "bool": bool}[typ if isinstance(typ, str) else typ.__name__]
    if want is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if want is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> ServerConfig:
    """Defaults <- TOML file <- overrides (flags given on the command line); validated."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as e:
            raise ConfigError(f"config file {path}: cannot read it: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {path}: not UTF-8 text: {e.reason}") from None
        except RecursionError:
            raise ConfigError(f"config file {path}: values nested too deeply") from None
        except ValueError as e:  # TOMLDecodeError, or an integer of too many digits
            raise ConfigError(f"config file {path}: {e}") from None
        for key, value in doc.items():
            name = key.replace("-", "_")
            if name not in _FIELDS:
                raise ConfigError(f"config file {path}: unknown key {key!r}")
            values[name] = _coerce(name, value)
    for key, value in (overrides or {}).items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(f"unknown option {key!r}")
        if value is not None:
            values[name] = _coerce(name, value)
    return ServerConfig(**values).validate()
