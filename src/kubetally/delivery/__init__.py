"""Delivery of ledger records to billing backends through a durable outbox (see README.md).

Entry points: :func:`kubetally.delivery.engine.deliver_once` (one drain of every destination),
:class:`kubetally.delivery.engine.Deliverer` (long-running), and
:func:`kubetally.config.destinations.destinations_from_env` (vBilling's variables).
"""
