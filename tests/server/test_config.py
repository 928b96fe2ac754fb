"""Server configuration: defaults, TOML, flags win, and one clear error per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiraft.server.config import ConfigError, load_config, parse_addr, parse_initial_cluster


def test_defaults_are_a_working_single_store() -> None:
    c = load_config()
    assert (c.store_id, c.client_addr, c.peer_addr, c.admin_addr) == (
        1, "127.0.0.1:20160", "127.0.0.1:20161", "127.0.0.1:20180",
    )
    assert c.peers() == {1: ("127.0.0.1", 20161)}
    assert c.check_quorum and c.pre_vote and not c.lease_reads


def test_toml_then_flags(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('store-id = 2\ninitial_cluster = "1=127.0.0.1:1,2=127.0.0.1:2"\nfsync = false\n')
    c = load_config(p)
    assert c.store_id == 2 and not c.fsync and c.peers()[2] == ("127.0.0.1", 2)
    c = load_config(p, {"store_id": "1", "fsync": None})
    assert c.store_id == 1 and not c.fsync  # None = flag not given


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"store_id": 0}, "store_id must be"),
        ({"client_addr": "nohost"}, "client_addr: expected host:port"),
        ({"peer_addr": "1.2.3.4:99999"}, "port out of range"),
        ({"initial_cluster": "1=127.0.0.1:1", "store_id": 2}, "store_id 2 is not in initial_cluster"),
        ({"initial_cluster": "1=127.0.0.1:1,1=127.0.0.1:2"}, "listed twice"),
        ({"initial_cluster": "x=127.0.0.1:1"}, "expected id=host:port"),
        ({"election_ticks": 2, "heartbeat_ticks": 2}, "must be greater than heartbeat_ticks"),
        ({"lease_reads": True, "check_quorum": False}, "lease_reads requires check_quorum"),
        ({"store_id": "abc"}, "expected an integer"),
        ({"fsync": "maybe"}, "expected true or false"),
        ({"no_such_option": 1}, "unknown option"),
        ({"log_format": "xml"}, "log_format must be"),
        ({"initial_regions": 0}, "initial_regions must be"),
        ({"store_suspect_ticks": 5}, "store_suspect_ticks (5) must be at least election_ticks (10)"),
        ({"initial_regions": (1 << 20) + 1}, "initial_regions must be in [1, 1048576]"),
        ({"tls_cert": "a.pem"}, "TLS needs"),
    ],
)
def test_invalid_configs(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_stores_are_suspected_after_three_election_timeouts_by_default() -> None:
    assert load_config(None, {}).suspect_ticks() == 30
    assert load_config(None, {"election_ticks": 20}).suspect_ticks() == 60
    assert load_config(None, {"store_suspect_ticks": 12}).suspect_ticks() == 12


def test_a_hundred_thousand_initial_regions_are_allowed() -> None:
    assert load_config(None, {"initial_regions": 100_000}).initial_regions == 100_000


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("store_id = [")
    with pytest.raises(ConfigError):
        load_config(bad)
    unknown = tmp_path / "u.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_config(unknown)


def test_address_parsing() -> None:
    assert parse_addr("[::1]:80") == ("::1", 80)
    assert parse_initial_cluster("1=a:1, 2=b:2") == {1: ("a", 1), 2: ("b", 2)}


def test_advertised_addresses() -> None:
    c = load_config()
    assert (c.advertise_client_addr, c.advertise_peer_addr, c.advertise_admin_addr) == ("", "", "")
    assert c.advertised_peer_addr() == c.peer_addr
    c = load_config(None, {
        "peer_addr": "0.0.0.0:20161",
        "advertise_peer_addr": "db1.example.com:20161",
        "advertise_client_addr": "[2001:db8::1]:20160",
    })
    assert c.advertised_peer_addr() == "db1.example.com:20161"
    # A lone store's own entry is what it advertises; joining stores list themselves so too.
    assert c.peers() == {1: ("db1.example.com", 20161)}
    c = load_config(None, {
        "store_id": 4, "join": True, "initial_cluster": "1=10.0.0.1:20161",
        "advertise_peer_addr": "10.0.0.4:20161",
    })
    assert c.peers()[4] == ("10.0.0.4", 20161)


def test_advertised_addresses_from_toml(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        'client_addr = "0.0.0.0:20160"\n'
        'advertise_client_addr = "10.0.0.1:20160"\n'
        'advertise-admin-addr = "10.0.0.1:20180"\n'
    )
    c = load_config(p)
    assert (c.advertise_client_addr, c.advertise_admin_addr) == ("10.0.0.1:20160", "10.0.0.1:20180")
    c = load_config(p, {"advertise_client_addr": "lb.example.com:9000"})  # the flag wins
    assert c.advertise_client_addr == "lb.example.com:9000"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"advertise_peer_addr": "0.0.0.0:20161"}, "advertise_peer_addr must be an address others can reach"),
        ({"advertise_client_addr": "[::]:20160"}, "advertise_client_addr must be an address others"),
        ({"advertise_admin_addr": "nohost"}, "advertise_admin_addr: expected host:port"),
        ({"advertise_client_addr": "a:0"}, "advertise_client_addr: port out of range"),
    ],
)
def test_invalid_advertised_addresses(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert message in str(e.value)
