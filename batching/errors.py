"""Errors of the batching layer.

`BatchingError` is the base. `BatchingFatalError` means a round could not be made durable
(disk full, I/O error, ...): from then on the layer acknowledges nothing and every call
raises it again; the store must stop serving and restart from what is on disk (a restart
recovers to the last committed round). `BatcherClosed` is raised after `close()`.
"""

from __future__ import annotations

__all__ = ["BatchingError", "BatchingFatalError", "BatcherClosed"]


class BatchingError(Exception):
    """Base class of the batching layer's errors."""


class BatchingFatalError(BatchingError):
    """Round `round_number` failed to commit with `cause`; nothing from it on is (or will
    be) acknowledged."""

    def __init__(self, round_number: int, cause: BaseException) -> None:
        self.round_number = round_number
        self.cause = cause
        super().__init__(
            f"round {round_number} could not be persisted ({type(cause).__name__}: {cause}); "
            f"nothing from round {round_number} on is acknowledged: stop and restart the store "
            "from disk"
        )
        self.__cause__ = cause


class BatcherClosed(BatchingError):
    """The batcher was closed."""

    def __init__(self, msg: str = "batcher is closed") -> None:
        super().__init__(msg)
