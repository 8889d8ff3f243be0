"""Configuration: kubetally.yaml, Alauda cost-model ConfigMaps, built-in presets.

The names below are loaded on first use (PEP 562), so importing a light submodule such as
:mod:`kubetally.config.names` does not build every pydantic model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetally.config.costmodel import Aggregation, CollectionItem, DisplayItem, DisplayMethod
    from kubetally.config.loader import Config, KubetallyConfig, Settings, discover_config_files, load_config

_EXPORTS = {
    "Aggregation": "kubetally.config.costmodel",
    "CollectionItem": "kubetally.config.costmodel",
    "DisplayItem": "kubetally.config.costmodel",
    "DisplayMethod": "kubetally.config.costmodel",
    "Config": "kubetally.config.loader",
    "KubetallyConfig": "kubetally.config.loader",
    "Settings": "kubetally.config.loader",
    "load_config": "kubetally.config.loader",
    "discover_config_files": "kubetally.config.loader",
}

__all__ = [
    "Aggregation",
    "CollectionItem",
    "Config",
    "DisplayItem",
    "DisplayMethod",
    "KubetallyConfig",
    "Settings",
    "discover_config_files",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
