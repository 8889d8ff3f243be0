"""Real parts for tests and benchmarks: servers started on loopback, never mocks of them.

Each helper raises :class:`MissingPart` when the real binary is not installed. The test
suite turns that into a failure under ``CI=true`` and into a skip with the install hint
elsewhere, so a developer without the part still sees exactly what is missing.
"""

from __future__ import annotations


class MissingPart(RuntimeError):
    """A real dependency (prometheus, postgres, chromium) is not installed here."""

    def __init__(self, part: str, hint: str):
        super().__init__(f"{part} is not installed ({hint})")
        self.part = part
        self.hint = hint
