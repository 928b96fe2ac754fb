"""multiraft: a multi-raft sharded storage node.

The consensus core (raft-rs 0.7's API) is re-exported here: `from multiraft import RawNode`.
"""

from .raft import *  # noqa: F403
from .raft import __all__ as _raft_all

__version__ = "0.1.0"
__all__ = [*_raft_all, "__version__"]  # noqa: PLE0604
