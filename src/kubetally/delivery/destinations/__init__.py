"""Destination adapters, one module per backend; :func:`build_destination` picks one."""

from __future__ import annotations

from collections.abc import Mapping

from kubetally.config.destinations import (
    DestinationBase,
    FileConfig,
    LagoConfig,
    MetronomeConfig,
    OpenMeterConfig,
    StripeConfig,
    WebhookConfig,
)
from kubetally.delivery.destinations.base import Destination


def build_destination(config: DestinationBase, environ: Mapping[str, str] | None = None) -> Destination:
    """The adapter for one configured destination (secrets are read here, from env or file)."""
    kind = config.kind
    if kind == "lago":
        from kubetally.delivery.destinations.lago import LagoDestination

        assert isinstance(config, LagoConfig)
        return LagoDestination(config, environ)
    if kind == "stripe":
        from kubetally.delivery.destinations.stripe import StripeDestination

        assert isinstance(config, StripeConfig)
        return StripeDestination(config, environ)
    if kind == "metronome":
        from kubetally.delivery.destinations.metronome import MetronomeDestination

        assert isinstance(config, MetronomeConfig)
        return MetronomeDestination(config, environ)
    if kind == "openmeter":
        from kubetally.delivery.destinations.openmeter import OpenMeterDestination

        assert isinstance(config, OpenMeterConfig)
        return OpenMeterDestination(config, environ)
    if kind == "webhook":
        from kubetally.delivery.destinations.webhook import WebhookDestination

        assert isinstance(config, WebhookConfig)
        return WebhookDestination(config, environ)
    if kind == "file":
        from kubetally.delivery.destinations.file import FileDestination

        assert isinstance(config, FileConfig)
        return FileDestination(config)
    raise ValueError(f"unknown destination type {kind!r}")


__all__ = ["Destination", "build_destination"]
