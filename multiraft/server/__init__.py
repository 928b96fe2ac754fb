"""The storage node process: configuration (`config`), the asyncio runtime of one store
(`node.StoreNode`), `multiraft server` (`main`), the admin HTTP API (`admin`, `openapi`), the
metrics flush, `multiraft ctl`, `multiraft playground` and the local-cluster launcher they and
the end-to-end tests share (`localcluster`).

Only the configuration is imported here: the command line imports the rest on demand (so
`multiraft ctl` starts without loading the event loop, aiohttp or the store)."""

from .config import ConfigError, ServerConfig, load_config

__all__ = ["ConfigError", "ServerConfig", "load_config"]
