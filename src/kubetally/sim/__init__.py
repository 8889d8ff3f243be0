"""A scenario-driven simulated Kubernetes API server (``kubetally sim serve``, tests, the demo).

No kube-apiserver can run where kubetally is tested, yet the Kubernetes source must be exercised
through the real client library over the real wire format; this package is that cluster.
"""

from kubetally.sim.scenario import Scenario, ScenarioError, ScenarioEvent
from kubetally.sim.server import SimServer

__all__ = ["Scenario", "ScenarioError", "ScenarioEvent", "SimServer"]
