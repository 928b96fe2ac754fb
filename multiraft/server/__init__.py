"""The storage node process (uvloop main, client service, admin HTTP API, CLI). So far: its
configuration."""

from .config import ConfigError, ServerConfig, load_config

__all__ = ["ConfigError", "ServerConfig", "load_config"]
