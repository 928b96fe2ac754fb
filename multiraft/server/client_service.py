"""The client service: the store's client port (wire protocol in multiraft/client/protocol.py).

One asyncio.Protocol per connection decodes frames, validates each request and hands it to the
sans-I/O `Store`; the store's callback (fired later from inside `store.round()`) writes the
response straight to the connection's transport. No task or future per request: a request
costs one closure. After a chunk of input submitted anything, `kick()` asks the runtime for a
round.

Failure containment: a malformed request (bad field, unknown op) gets an INVALID_REQUEST
response; a frame that is too long or not msgpack closes that connection only (counted in
`stats["bad_frames"]`); nothing a client sends raises out of the service. Each connection has
at most `max_inflight_per_conn` requests waiting on the store; more are refused with
SERVER_BUSY at once. A client that does not read its responses stops being read (transport
flow control).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from multiraft.client.protocol import (
    MAX_FRAME,
    MAX_KEY,
    MAX_REQUEST_ID,
    MAX_SCAN_LIMIT,
    MAX_VALUE,
    FrameDecoder,
    FrameError,
    encode_frame,
)
from multiraft.proto.serverpb_pb2 import Region, RegionEpoch
from multiraft.store.cmd import OP_CAS, OP_DELETE, OP_PUT, Command, Op
from multiraft.store.errors import (
    EpochNotMatch,
    KeyNotInRegion,
    NotLeader,
    RegionNotFound,
    ServerBusy,
    StoreError,
)
from multiraft.store.kv import Applied, CasFailed
from multiraft.store.store import Store

__all__ = ["ClientService", "StoreAddrs", "ResponseFault"]

_log = logging.getLogger(__name__)

# store id -> client address ("host:port"): a mapping kept up to date by the runtime, or a
# callable returning one.
StoreAddrs = Callable[[], Mapping[int, str]] | Mapping[int, str]
# Test hook: (op, response) -> None (send it), "drop" (lose it) or "close" (close the
# connection instead of answering). Applied to answers that come back from the store.
ResponseFault = Callable[[str, dict[str, Any]], str | None]

_MAX_ID: Final = (1 << 64) - 1
_OP_KINDS: Final = {"put": OP_PUT, "delete": OP_DELETE, "cas": OP_CAS}
# Most ops one `batch` may carry.
MAX_BATCH_OPS: Final = 1024


class _Invalid(Exception):
    """The request is malformed (answered with INVALID_REQUEST)."""


def _invalid_wire(message: str) -> dict[str, Any]:
    return {"code": "INVALID_REQUEST", "message": message, "retryable": False}


# -- field validation (each raises _Invalid) ----------------------------------------------------


def _get_int(req: dict[str, Any], name: str, lo: int = 0, hi: int = _MAX_ID) -> int:
    v = req.get(name)
    if type(v) is not int or not lo <= v <= hi:
        raise _Invalid(f"{name!r} must be an integer in [{lo}, {hi}]")
    return v


def _get_bytes(
    req: dict[str, Any], name: str, max_len: int, *, min_len: int = 0, default: bytes | None = None
) -> bytes:
    v = req.get(name)
    if v is None and default is not None:
        return default
    if type(v) is not bytes or not min_len <= len(v) <= max_len:
        raise _Invalid(f"{name!r} must be {min_len}..{max_len} bytes (msgpack bin)")
    return v


def _get_key(req: dict[str, Any], name: str = "key") -> bytes:
    return _get_bytes(req, name, MAX_KEY, min_len=1)


def _get_optional_value(req: dict[str, Any], name: str) -> bytes | None:
    v = req.get(name)
    if v is None:
        return None
    if type(v) is not bytes or len(v) > MAX_VALUE:
        raise _Invalid(f"{name!r} must be None or at most {MAX_VALUE} bytes (msgpack bin)")
    return v


def _get_epoch(req: dict[str, Any]) -> RegionEpoch | None:
    v = req.get("epoch")
    if v is None:
        return None
    if (
        type(v) is not list
        or len(v) != 2
        or not all(type(x) is int and 0 <= x <= _MAX_ID for x in v)
    ):
        raise _Invalid("'epoch' must be [conf_ver, version] or absent")
    return RegionEpoch(conf_ver=v[0], version=v[1])


def _get_op(d: Any, i: int) -> Op:
    if type(d) is not dict:
        raise _Invalid(f"batch op {i} must be a map")
    name = d.get("op")
    kind = _OP_KINDS.get(name) if type(name) is str else None
    if kind is None:
        raise _Invalid(f"batch op {i}: 'op' must be one of put, delete, cas")
    key = _get_key(d)
    if kind == OP_PUT:
        return Op(OP_PUT, key, value=_get_bytes(d, "value", MAX_VALUE))
    if kind == OP_DELETE:
        return Op(OP_DELETE, key)
    return Op(OP_CAS, key, value=_get_optional_value(d, "value"),
              expected=_get_optional_value(d, "expected"))


class _Connection(asyncio.Protocol):
    """One client connection. Invariant: `inflight` counts the requests handed to the store
    whose callback has not fired yet."""

    __slots__ = ("svc", "transport", "decoder", "inflight", "closed", "peername", "_out", "_loop")

    def __init__(self, svc: ClientService) -> None:
        self.svc = svc
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(svc.max_frame, strict_map_key=True)
        self.inflight = 0
        # Set once the transport is closing: late store callbacks then write nothing.
        self.closed = False
        self.peername: Any = None
        # Answers encoded since the last flush: one socket write per loop iteration carries
        # all of them (a round answers many requests of one connection at once).
        self._out: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one.)
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        self.peername = transport.get_extra_info("peername")
        self.svc._conns.add(self)
        self.svc._count("connections")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.svc._conns.discard(self)

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its questions.
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        svc = self.svc
        try:
            requests = self.decoder.feed(data)
        except FrameError as e:
            svc._count("bad_frames")
            _log.warning("client %s: %s; closing the connection", self.peername, e)
            self.close()
            return
        submitted = False
        for req in requests:
            try:
                submitted |= svc._handle(self, req)
            except Exception:  # a bug: never let it kill the connection's other requests
                _log.exception("client %s: request failed", self.peername)
                svc._count("internal_errors")
        if submitted:
            svc._kick()

    # -- output -------------------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed:
            self._flush()  # the answers already given still go out
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def send(self, response: dict[str, Any]) -> None:
        if self.closed or self.transport is None:
            return
        out = self._out
        out.append(encode_frame(response))
        if len(out) == 1:
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        self._out = []
        if not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))


class ClientService:
    """The store's client port. `stats` holds plain int counters (flushed to Prometheus by
    the runtime): `connections`, `bad_frames`, `busy`, `requests_<op>`, `errors_<CODE>`,
    `internal_errors`."""

    def __init__(
        self,
        store: Store,
        kick: Callable[[], None],
        store_addrs: StoreAddrs,
        *,
        max_frame: int = MAX_FRAME,
        max_inflight_per_conn: int = 1024,
    ) -> None:
        self.store = store
        self._kick = kick
        self._store_addrs = store_addrs
        self.max_frame = max_frame
        self.max_inflight_per_conn = max_inflight_per_conn
        self.stats: dict[str, int] = {"connections": 0, "bad_frames": 0, "busy": 0}
        # Test hook (see ResponseFault).
        self.response_fault: ResponseFault | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self._handlers: dict[str, Callable[[_Connection, int, dict[str, Any]], bool]] = {
            "get": self._get,
            "scan": self._scan,
            "put": self._write,
            "delete": self._write,
            "cas": self._write,
            "batch": self._write,
            "regions": self._regions,
            "ping": self._ping,
        }
        self._request_keys = {op: "requests_" + op for op in self._handlers}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Listen on `host:port` (port 0: any free port, see `listen_port`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)

    @property
    def listen_port(self) -> int:
        assert self._server is not None and self._server.sockets, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def close(self) -> None:
        """Stop listening and close every connection (requests still waiting on the store get
        no answer; their clients see the connection end and retry elsewhere)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._conns):
            conn.close()
        if server is not None:
            await server.wait_closed()

    # -- helpers --------------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        stats = self.stats
        stats[name] = stats.get(name, 0) + 1

    def store_addrs(self) -> Mapping[int, str]:
        addrs = self._store_addrs
        return addrs() if callable(addrs) else addrs

    def region_wire(self, region: Region) -> dict[str, Any]:
        """A region as the protocol describes it, with the leader this store knows of."""
        leader: int | None = None
        peer = self.store.peers.get(region.id)
        if peer is not None:
            meta = peer.leader_meta()
            if meta is not None:
                leader = meta.store_id
        e = region.region_epoch
        return {
            "id": region.id,
            "start": region.start_key,
            "end": region.end_key,
            "epoch": [e.conf_ver, e.version],
            "peers": [[p.id, p.store_id, p.role] for p in region.peers],
            "leader": leader,
        }

    def error_wire(self, err: StoreError) -> dict[str, Any]:
        d: dict[str, Any] = {"code": err.code, "message": str(err), "retryable": err.retryable}
        if isinstance(err, NotLeader):
            d["region_id"] = err.region_id
            if err.leader is not None:
                sid = err.leader.store_id
                d["leader"] = {
                    "peer_id": err.leader.id,
                    "store_id": sid,
                    "addr": self.store_addrs().get(sid),
                }
        elif isinstance(err, EpochNotMatch):
            d["current_regions"] = [self.region_wire(r) for r in err.current_regions]
        elif isinstance(err, RegionNotFound):
            d["region_id"] = err.region_id
            if err.current_regions:
                d["current_regions"] = [self.region_wire(r) for r in err.current_regions]
        elif isinstance(err, KeyNotInRegion):
            d["key"] = err.key
            d["region"] = self.region_wire(err.region)
            if err.current_regions:
                d["current_regions"] = [self.region_wire(r) for r in err.current_regions]
        return d

    def _fail(self, conn: _Connection, rid: int | None, error: dict[str, Any]) -> None:
        self._count("errors_" + error["code"])
        conn.send({"id": rid, "ok": False, "error": error})

    def _answer(self, conn: _Connection, op: str, response: dict[str, Any]) -> None:
        """Send an answer that came back from the store (through the test hook, if any)."""
        fault = self.response_fault
        if fault is not None:
            what = fault(op, response)
            if what == "drop":
                return
            if what == "close":
                conn.close()
                return
        conn.send(response)

    def _callback(
        self, conn: _Connection, rid: int, op: str, convert: Callable[[Any], Any]
    ) -> Callable[[Any, StoreError | None], None]:
        """The store callback answering request `rid` (fires once, inside a round)."""

        def done(result: Any, err: StoreError | None) -> None:
            conn.inflight -= 1
            if conn.closed:
                return
            if err is not None:
                error = self.error_wire(err)
                self._count("errors_" + error["code"])
                self._answer(conn, op, {"id": rid, "ok": False, "error": error})
                return
            try:
                value = convert(result)
            except Exception:
                _log.exception("request %d (%s): cannot convert result %r", rid, op, result)
                error = {"code": "INTERNAL", "message": "bad result", "retryable": False}
                self._count("errors_INTERNAL")
                self._answer(conn, op, {"id": rid, "ok": False, "error": error})
                return
            self._answer(conn, op, {"id": rid, "ok": True, "result": value})

        return done

    # -- requests -------------------------------------------------------------------------------

    def _handle(self, conn: _Connection, req: Any) -> bool:
        """Validate and dispatch one decoded request; True if the store got work."""
        if type(req) is not dict:
            self._fail(conn, None, _invalid_wire("a request must be a msgpack map"))
            return False
        rid = req.get("id")
        if type(rid) is not int or not 0 <= rid <= _MAX_ID:
            self._fail(conn, None, _invalid_wire("'id' must be an unsigned 64-bit integer"))
            return False
        op = req.get("op")
        handler = self._handlers.get(op) if type(op) is str else None
        if handler is None:
            self._fail(conn, rid, _invalid_wire(f"unknown op {op!r:.40}"))
            return False
        assert isinstance(op, str)
        self._count(self._request_keys[op])
        try:
            return handler(conn, rid, req)
        except _Invalid as e:
            self._fail(conn, rid, _invalid_wire(str(e)))
        except StoreError as e:
            self._fail(conn, rid, self.error_wire(e))
        except ValueError as e:  # e.g. CommandDecodeError from the store's own validation
            self._fail(conn, rid, _invalid_wire(str(e)))
        except Exception as e:
            _log.exception("request %d (%s) failed", rid, op)
            self._fail(conn, rid, {"code": "INTERNAL", "message": repr(e), "retryable": False})
        return False

    def _submit(self, conn: _Connection, call: Callable[[], None]) -> bool:
        """Run `call` (which hands a callback to the store), keeping `inflight` exact."""
        if conn.inflight >= self.max_inflight_per_conn:
            self._count("busy")
            raise ServerBusy(
                f"more than {self.max_inflight_per_conn} requests in flight on this connection"
            )
        conn.inflight += 1
        try:
            call()
        except BaseException:
            conn.inflight -= 1
            raise
        return True

    def _ping(self, conn: _Connection, rid: int, req: dict[str, Any]) -> bool:
        conn.send({"id": rid, "ok": True, "result": {"store_id": self.store.store_id}})
        return False

    def _regions(self, conn: _Connection, rid: int, req: dict[str, Any]) -> bool:
        regions = [self.region_wire(p.region) for p in self.store.peers.values() if p.initialized]
        result = {
            "store_id": self.store.store_id,
            "regions": regions,
            "stores": dict(self.store_addrs()),
        }
        conn.send({"id": rid, "ok": True, "result": result})
        return False

    def _get(self, conn: _Connection, rid: int, req: dict[str, Any]) -> bool:
        region_id = _get_int(req, "region_id")
        epoch = _get_epoch(req)
        key = _get_key(req)
        cb = self._callback(conn, rid, "get", _same)
        return self._submit(conn, lambda: self.store.get(region_id, key, cb, epoch))

    def _scan(self, conn: _Connection, rid: int, req: dict[str, Any]) -> bool:
        region_id = _get_int(req, "region_id")
        epoch = _get_epoch(req)
        start = _get_bytes(req, "start", MAX_KEY, default=b"")
        end = _get_bytes(req, "end", MAX_KEY, default=b"")
        limit = _get_int(req, "limit", 1, MAX_SCAN_LIMIT)
        cb = self._callback(conn, rid, "scan", _pairs)
        return self._submit(
            conn, lambda: self.store.scan(region_id, start, end, limit, cb, epoch)
        )

    def _write(self, conn: _Connection, rid: int, req: dict[str, Any]) -> bool:
        op: str = req["op"]
        region_id = _get_int(req, "region_id")
        epoch = _get_epoch(req)
        request_id = _get_bytes(req, "request_id", MAX_REQUEST_ID, default=b"")
        convert: Callable[[Any], Any]
        if op == "put":
            ops = [Op(OP_PUT, _get_key(req), value=_get_bytes(req, "value", MAX_VALUE))]
            convert = _none
        elif op == "delete":
            ops = [Op(OP_DELETE, _get_key(req))]
            convert = _none
        elif op == "cas":
            ops = [
                Op(
                    OP_CAS,
                    _get_key(req),
                    value=_get_optional_value(req, "value"),
                    expected=_get_optional_value(req, "expected"),
                )
            ]
            convert = _swapped
        else:
            raw = req.get("ops")
            if type(raw) is not list or not 1 <= len(raw) <= MAX_BATCH_OPS:
                raise _Invalid(f"'ops' must be a list of 1..{MAX_BATCH_OPS} ops")
            ops = [_get_op(d, i) for i, d in enumerate(raw)]
            convert = _batch_result
        cmd = Command(
            region_id,
            epoch.conf_ver if epoch is not None else 0,
            epoch.version if epoch is not None else 0,
            ops,
            request_id,
        )
        cb = self._callback(conn, rid, op, convert)
        return self._submit(conn, lambda: self.store.propose(cmd, cb, epoch))


# -- result conversions (store result -> wire result) ------------------------------------------


def _same(result: Any) -> Any:
    return result


def _none(result: Any) -> None:
    return None


def _pairs(result: Any) -> list[list[bytes]]:
    return [[k, v] for k, v in result]


def _swapped(result: Any) -> bool:
    if isinstance(result, Applied):
        return True
    if isinstance(result, CasFailed):
        return False
    return bool(result)


def _batch_result(result: Any) -> dict[str, Any]:
    if isinstance(result, CasFailed):
        return {"applied": False, "failed_op": result.op_index, "current": result.current}
    assert isinstance(result, Applied)
    return {"applied": True, "previous": list(result.previous)}
