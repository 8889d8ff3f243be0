"""Contract-validating fake billing backends, served on loopback for adapter tests.

>>> with start_backend("lago") as be:          # doctest: +SKIP
...     httpx.post(f"{be.base_url}/events", ...)
...     assert be.violations == []

Each fake validates every request against the vendor's spec in ``../shared/contracts`` and
answers with the vendor's documented bodies; see :class:`~kubetally.testing.backends.base.FakeBackend`
for the fault-injection API shared by all of them.

========== ====================================== ================================ ===========================
name       ``base_url``                           ``events`` key (``event_key``)   ``objects`` kinds
========== ====================================== ================================ ===========================
lago       ``http://127.0.0.1:P/api/v1``          (external_subscription_id,       billable_metrics, plans,
                                                  transaction_id) [#ch]_           customers, subscriptions
stripe     ``http://127.0.0.1:P`` (also           identifier                       meters, customers,
           ``stream_base_url``)                                                    meter_event_adjustments
metronome  ``http://127.0.0.1:P``                 transaction_id                   customers, billable_metrics
openmeter  ``http://127.0.0.1:P``                 (source, id)                     meters, subjects, customers
webhook    ``http://127.0.0.1:P/hook``            (source, id)                     —
========== ====================================== ================================ ===========================

.. [#ch] ``start_backend("lago", pipeline="clickhouse")``: (transaction_id, timestamp), overwrite.

Vendor options: lago ``pipeline``; stripe ``require_meter`` (and ``expire_sessions()``,
``async_errors``); openmeter ``cloud`` (False = self-hosted spec, no auth); webhook ``max_batch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubetally.testing.backends.base import FakeBackend, Recorded

BACKENDS = ("lago", "stripe", "metronome", "openmeter", "webhook")


def backend_class(name: str) -> type[FakeBackend]:
    """The fake for one vendor name (imported lazily: each pulls in its own spec)."""
    if name == "lago":
        from kubetally.testing.backends.lago import LagoBackend

        return LagoBackend
    if name == "stripe":
        from kubetally.testing.backends.stripe import StripeBackend

        return StripeBackend
    if name == "metronome":
        from kubetally.testing.backends.metronome import MetronomeBackend

        return MetronomeBackend
    if name == "openmeter":
        from kubetally.testing.backends.openmeter import OpenMeterBackend

        return OpenMeterBackend
    if name == "webhook":
        from kubetally.testing.backends.webhook import WebhookBackend

        return WebhookBackend
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")


def create_backend(name: str, **options: Any) -> FakeBackend:
    """A fake, not yet listening (options: api_key, host, port and vendor-specific ones)."""
    return backend_class(name)(**options)


@contextmanager
def start_backend(name: str, **options: Any) -> Iterator[Any]:
    """Serve one fake on 127.0.0.1 (free port unless ``port=``) for the ``with`` block.

    Yields the vendor subclass (typed ``Any`` so tests can reach vendor extras such as
    Stripe's ``expire_sessions()`` without casts).
    """
    backend = create_backend(name, **options)
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


__all__ = ["BACKENDS", "FakeBackend", "Recorded", "backend_class", "create_backend", "start_backend"]
