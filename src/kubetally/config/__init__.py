"""Configuration: kubetally.yaml, Alauda cost-model ConfigMaps, built-in presets."""

from kubetally.config.costmodel import Aggregation, CollectionItem, DisplayItem, DisplayMethod
from kubetally.config.loader import Config, KubetallyConfig, Settings, load_config

__all__ = [
    "Aggregation",
    "CollectionItem",
    "Config",
    "DisplayItem",
    "DisplayMethod",
    "KubetallyConfig",
    "Settings",
    "load_config",
]
