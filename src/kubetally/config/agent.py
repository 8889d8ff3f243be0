"""The ``agent:`` section of kubetally.yaml: running in a cluster (replicas, live config, probes).

Example::

    agent:
      leader_election:
        enabled: true            # several replicas, one leader (a coordination.k8s.io/v1 Lease)
        lease_name: kubetally-agent
        namespace: kubetally     # default: the pod's namespace (service account), else "default"
        lease_duration: 15s      # client-go defaults
        renew_deadline: 10s
        retry_period: 2s
      live_config:
        enabled: true            # read cost-model ConfigMaps by label and reload them on change
        collection_namespace: cpaas-system
        display_namespace: kube-public
        namespace: kubetally     # where kubetally's own ConfigMaps (label kubetally.io/config) live
      listen: 0.0.0.0:9090       # /healthz, /readyz, /metrics (off when absent)
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from kubetally.config.costmodel import Strict
from kubetally.config.types import Duration

#: Label of kubetally's own ConfigMaps (``data["kubetally.yaml"]``: price book, items, display).
KUBETALLY_CONFIG_LABEL = "kubetally.io/config"


class LeaderElectionConfig(Strict):
    """client-go leader election through a Lease; the defaults are client-go's."""

    enabled: bool = False
    lease_name: str = "kubetally-agent"
    #: ``None``: the namespace the agent runs in (its service account's), else ``default``.
    namespace: str | None = None
    lease_duration: Duration = timedelta(seconds=15)
    renew_deadline: Duration = timedelta(seconds=10)
    retry_period: Duration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _ordered(self) -> LeaderElectionConfig:
        # client-go refuses the same: a leader must give up before others may take over.
        if not self.lease_duration > self.renew_deadline > self.retry_period > timedelta(0):
            raise ValueError(
                "lease_duration must be greater than renew_deadline, which must be greater than retry_period (> 0)"
            )
        return self


class LiveConfigConfig(Strict):
    """Cost-model ConfigMaps read from the API and reloaded on change (no restart)."""

    enabled: bool = False
    #: Alauda's collection ConfigMaps (label ``cpaas.io/slark.collection.config: "true"``).
    collection_namespace: str = "cpaas-system"
    #: Alauda's display ConfigMaps (label ``cpaas.io/slark.display.config: "true"``).
    display_namespace: str = "kube-public"
    #: kubetally's own ConfigMaps (label ``kubetally.io/config: "true"``); ``None``: the agent's.
    namespace: str | None = None


class AgentConfig(Strict):
    leader_election: LeaderElectionConfig = Field(default_factory=LeaderElectionConfig)
    live_config: LiveConfigConfig = Field(default_factory=LiveConfigConfig)
    #: ``host:port`` of the health and metrics listener; ``None``: no listener.
    listen: str | None = None
