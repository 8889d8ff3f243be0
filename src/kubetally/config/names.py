"""Names the command line shows in ``--help`` before any configuration is loaded.

Kept free of pydantic and the models, so ``kubetally --help`` does not build them
(:mod:`kubetally.config.destinations` re-exports both)."""

from __future__ import annotations

#: Every destination ``type`` (the ``type:`` of a destination, ``kubetally deliver --to``).
DESTINATION_TYPES = ("lago", "stripe", "metronome", "openmeter", "webhook", "file")

#: Where each one-off ``--to`` destination reads its key (see ``kubetally deliver --help``).
KEY_VARIABLES = {
    "lago": "LAGO_API_KEY",
    "stripe": "STRIPE_API_KEY",
    "metronome": "METRONOME_API_TOKEN",
    "openmeter": "OPENMETER_API_KEY",
    "webhook": "KUBETALLY_WEBHOOK_SECRET",
}
