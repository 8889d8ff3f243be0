"""The ``server:`` section's model lives in :mod:`kubetally.config.server` (the typed config root
owns every section); re-exported here for the server's own modules."""

from kubetally.config.server import ServerConfig

__all__ = ["ServerConfig"]
