"""Destination adapters, one module per backend; :func:`build_destination` picks one."""

from __future__ import annotations

from collections.abc import Mapping

from kubetally.delivery.config import DestinationBase
from kubetally.delivery.destinations.base import Destination


def build_destination(config: DestinationBase, environ: Mapping[str, str] | None = None) -> Destination:
    """The adapter for one configured destination (secrets are read here, from env or file)."""
    kind = config.kind
    if kind == "lago":
        from kubetally.delivery.destinations.lago import LagoDestination

        return LagoDestination(config, environ)  # type: ignore[arg-type]
    if kind == "stripe":
        from kubetally.delivery.destinations.stripe import StripeDestination

        return StripeDestination(config, environ)  # type: ignore[arg-type]
    if kind == "metronome":
        from kubetally.delivery.destinations.metronome import MetronomeDestination

        return MetronomeDestination(config, environ)  # type: ignore[arg-type]
    if kind == "openmeter":
        from kubetally.delivery.destinations.openmeter import OpenMeterDestination

        return OpenMeterDestination(config, environ)  # type: ignore[arg-type]
    if kind == "webhook":
        from kubetally.delivery.destinations.webhook import WebhookDestination

        return WebhookDestination(config, environ)  # type: ignore[arg-type]
    if kind == "file":
        from kubetally.delivery.destinations.file import FileDestination

        return FileDestination(config)  # type: ignore[arg-type]
    if kind == "kubetally":
        from kubetally.delivery.destinations.kubetally import KubetallyDestination

        return KubetallyDestination(config, environ)  # type: ignore[arg-type]
    raise ValueError(f"unknown destination type {kind!r}")


__all__ = ["Destination", "build_destination"]
