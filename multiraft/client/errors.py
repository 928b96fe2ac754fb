"""Errors of the client: one base class, `ClientError`, with a stable `code`.

Retryable store errors (NOT_LEADER, EPOCH_NOT_MATCH, SERVER_BUSY, ...) and lost connections
never reach the caller: the client retries them until the call's timeout, then raises
`ClientTimeout` naming the last thing that went wrong.
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "ClientError",
    "ClientTimeout",
    "TimeoutError",
    "ServerError",
    "InvalidRequest",
    "ClientClosed",
    "StoreUnavailable",
    "ProtocolError",
]


class ClientError(Exception):
    """Base class of every error the client raises."""

    code = "CLIENT_ERROR"


class ClientTimeout(ClientError, builtins.TimeoutError):
    """The call did not succeed within its timeout (every retry failed or went unanswered).
    A write that timed out may or may not have been applied; retrying it is safe only through
    a call with the same request id (the client does that within one call)."""

    code = "TIMEOUT"


# `multiraft.client.TimeoutError`: also a builtin TimeoutError, so either catch works.
TimeoutError = ClientTimeout


class ServerError(ClientError):
    """A store refused the request with an error that retrying cannot fix. `details` holds
    the wire error (code, message, hints)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.details = details or {}


class InvalidRequest(ServerError):
    """The store found the request malformed (INVALID_REQUEST), or the client refused to send
    it (a key too long, a value too large)."""


class ClientClosed(ClientError):
    """The client was closed."""

    code = "CLOSED"


class StoreUnavailable(ClientError):
    """A store could not be reached (only from calls aimed at one store, like `ping`)."""

    code = "UNAVAILABLE"


class ProtocolError(ClientError):
    """A store sent something that is not the client protocol (the connection is dropped)."""

    code = "PROTOCOL_ERROR"
