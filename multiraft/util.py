"""raft-rs `raft::util`: size limits and small helpers.

Re-exports from `multiraft.raft.util` under the crate's path:
`from multiraft.util import limit_size`.
"""

from .raft.util import (
    NO_LIMIT,
    Union,
    entry_approximate_size,
    is_continuous_ents,
    limit_size,
    majority,
)

__all__ = [
    "NO_LIMIT",
    "Union",
    "entry_approximate_size",
    "is_continuous_ents",
    "limit_size",
    "majority",
]
