"""`multiraft server`: run one store process (uvloop; SIGTERM / SIGINT stop it gracefully).

Every key of `ServerConfig` is a flag (`--store-id`, `--data-dir`, `--base-tick-ms`, ...) and
a key of the TOML file given by `--config`; flags win. Exit status: 0 after a graceful stop,
2 for an invalid configuration, a listen address in use and a data dir locked by another
process (one line on stderr, no traceback, nothing created), 1 when the store failed (e.g. a
write round could not be made durable: disk full, I/O error, a file-size limit).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
import time
from dataclasses import fields
from types import FrameType
from typing import Any

from .config import ConfigError, ServerConfig, load_config

__all__ = ["add_server_parser", "config_from_args", "run_server", "setup_logging", "install_uvloop"]

_log = logging.getLogger(__name__)

_HELP = {
    "store_id": "this store's id (default 1)",
    "data_dir": "where the store keeps its data (default ./multiraft-data)",
    "client_addr": "client service address (default 127.0.0.1:20160)",
    "peer_addr": "store-to-store address (default 127.0.0.1:20161)",
    "admin_addr": "admin HTTP API and /metrics (default 127.0.0.1:20180)",
    "advertise_client_addr": "client address told to clients and other stores "
    "(default: --client-addr)",
    "advertise_peer_addr": "peer address told to other stores (default: --peer-addr)",
    "advertise_admin_addr": "admin address told to other stores and shown in /status "
    "(default: --admin-addr)",
    "initial_cluster": "the first stores, 1=host:port,2=host:port (default: this store alone)",
    "join": "join a running cluster (initial-cluster lists stores to contact)",
    "initial_regions": "regions to bootstrap (default 1)",
    "store_suspect_ticks": "ticks of silence after which another store is suspected down and "
    "the regions it led elect new leaders (default 0: 3 x --election-ticks; else at least --election-ticks)",
    "cluster_id": "cluster id, checked in every peer handshake (default 1)",
    "admin_token": "bearer token required by mutating admin calls",
    "log_format": "human (default) or json",
    "log_level": "debug, info (default), warning or error",
    "region_split_size": "split a region over this many bytes (default 96 MiB; 0: never)",
    "region_split_keys": "split a region over this many keys (default 960000; 0: never)",
    "region_split_qps": "split a region serving more requests/s than this (default 0: never)",
    "auto_merge": "merge small adjacent regions on the same stores (default on)",
    "region_merge_size": "merge a region below this many bytes (default 20 MiB)",
    "region_merge_keys": "merge a region below this many keys (default 200000)",
    "split_merge_interval_s": "no automatic merge of a region split or merged this recently "
    "(default 3600 s)",
    "max_pending_requests": "client requests waiting in the store before more are refused "
    "with SERVER_BUSY (default 1024; 0: no limit)",
    "leader_balance": "hand leaders to stores that lead fewer regions (default on)",
}


def add_server_parser(sub: Any) -> argparse.ArgumentParser:
    """The `server` subcommand on an argparse subparsers object."""
    p: argparse.ArgumentParser = sub.add_parser(
        "server",
        help="run a store process",
        description="Run one multiraft store. With no arguments: a single-store node in "
        "./multiraft-data.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML config file (flags win)")
    for f in fields(ServerConfig):
        if f.name.startswith("_"):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = _HELP.get(f.name, f"(default {f.default!r})")
        if f.type in ("bool", bool):
            p.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                help=help_,
            )
        else:
            p.add_argument(flag, dest=f.name, default=None, metavar="VALUE", help=help_)
    return p


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(fmt: str = "human", level: str = "info", prefix: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s {prefix}%(name)s: %(message)s")
        )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())


def install_uvloop() -> bool:
    """Make uvloop the event loop policy; False (asyncio's loop stays) if it is missing."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class _StartInterrupted(BaseException):
    """SIGTERM or SIGINT while the node starts (`_serve`)."""


def _fail(msg: str, code: int) -> int:
    print(f"multiraft server: error: {msg}", file=sys.stderr)
    return code


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The configuration `server` arguments describe (the TOML file, then the flags given);
    raises ConfigError."""
    overrides = {
        f.name: getattr(args, f.name, None) for f in fields(ServerConfig) if not f.name.startswith("_")
    }
    return load_config(args.config, overrides)


def run_server(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as e:
        return _fail(str(e), 2)
    setup_logging(config.log_format, config.log_level, prefix=f"[store {config.store_id}] ")
    uv = install_uvloop()
    try:
        return asyncio.run(_serve(config, uv))
    except ConfigError as e:
        return _fail(str(e), 2)
    except OSError as e:
        return _fail(f"cannot start: {e}", 1)
    except KeyboardInterrupt:
        return 0


async def _serve(config: ServerConfig, uvloop_on: bool) -> int:
    import lmdb

    from .node import StoreNode, tune_gc

    node = StoreNode(config)
    loop = asyncio.get_running_loop()
    signals = {"count": 0}
    started = interrupted = False

    def on_signal(sig: signal.Signals) -> None:
        if interrupted:
            return  # (the loop learns of a signal that already stopped the start)
        signals["count"] += 1
        if signals["count"] > 1:
            _log.warning("second %s: exiting now", sig.name)
            os._exit(1)
        _log.info("%s: stopping", sig.name)
        if started:
            node.request_stop()

    # Installed before the start: a signal during it stops the node right after.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # A file-size limit (`ulimit -f`, systemd's LimitFSIZE) must fail the write with EFBIG,
    # which stops the store with a message (a failed round is fatal), not kill it with
    # SIGXFSZ and a core dump.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # The start opens (or bootstraps) every region in one go, without returning to the loop
    # (minutes at 100,000 regions), so the loop's handlers would only run after it: until
    # then a signal interrupts the start where it is, and the node closes what it opened
    # (nothing half-written: each engine write is one transaction).
    def interrupt_start(signum: int, frame: FrameType | None) -> None:
        raise _StartInterrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt_start) for s in (signal.SIGTERM, signal.SIGINT)}
    # No cyclic collection while the regions are built (every object made lives on; at
    # 10,000 regions the collector's passes over them took ~45% of the open): `tune_gc`
    # freezes them and turns it back on.
    gc.disable()
    try:
        await node.start()
    except lmdb.Error as e:
        raise ConfigError(f"data dir {config.data_dir}: {e}") from None
    except _StartInterrupted as e:
        interrupted = True
        _log.info("%s during the start: stopped", e)
        return 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        gc.enable()
    started = True
    tune_gc()
    if signals["count"]:
        node.request_stop()
    if not uvloop_on:
        _log.warning("uvloop is not installed: running on asyncio's default loop")
    t0 = time.monotonic()
    code = await node.wait_stopped()
    _log.info("exit %d after %.1fs", code, time.monotonic() - t0)
    return code
