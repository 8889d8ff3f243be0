"""Configuration: kubetally.yaml, Alauda cost-model ConfigMaps, built-in presets."""

from kubetally.config.costmodel import Aggregation, CollectionItem, DisplayItem, DisplayMethod
from kubetally.config.loader import Config, Settings, discover_config_files, load_config

__all__ = [
    "Aggregation",
    "CollectionItem",
    "Config",
    "DisplayItem",
    "DisplayMethod",
    "Settings",
    "discover_config_files",
    "load_config",
]
