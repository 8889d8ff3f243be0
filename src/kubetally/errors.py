"""The error hierarchy the command line turns into one-line reasons."""

from __future__ import annotations


class KubetallyError(Exception):
    """Base of every error that should reach the user as a one-line reason."""


class ConfigError(KubetallyError):
    """One or more problems in configuration, each naming file, item and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "; ".join(problems)
            if len(problems) <= 3
            else f"{len(problems)} configuration problems:\n  " + "\n  ".join(problems)
        )


class SourceError(KubetallyError):
    """A source (Prometheus, Kubernetes) is unreachable or answered with an error."""
