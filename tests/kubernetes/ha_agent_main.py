"""``kubetally agent`` (the real command line) for the HA tests, run as a child process.

The one difference from production: the ``--clock apiserver`` clock asks the simulator for its
time on every reading instead of extrapolating between samples 0.2 s apart. The test moves the
frozen virtual clock in jumps (10:15 → 10:20); extrapolating across a jump would stamp the
events of the new instant with a time that never was, and the records would be inexact for a
reason that has nothing to do with leader election.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kubetally.app import agent
from kubetally.cli.main import main
from kubetally.sources.kubernetes.client import api_server_time


def _exact(self: agent.ApiServerClock) -> datetime:
    return api_server_time(self.api) or datetime.now(UTC)


agent.ApiServerClock.__call__ = _exact  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
