"""The ``kubernetes:`` section of kubetally.yaml.

Everything has a default that fits a vCluster GPU cloud, so the common case needs no section at
all. Every field is validated strictly (:class:`~kubetally.config.costmodel.Strict`): a typo in a
label name would silently bill nobody, so it must be an error instead.

Example::

    kubernetes:
      window: 1h                 # record period; 1m, 5m or 15m for near-real-time agents
      tenancy:
        namespace_label: kubetally.io/tenant
        project_label: cpaas.io/project
        offboard_grace: 1h
      dedicated_nodes:
        vcluster_label: vcluster.loft.sh/managed-by
        tenant_label: kubetally.io/tenant
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from kubetally.config.costmodel import Strict
from kubetally.config.types import Duration
from kubetally.periods import PeriodKind

#: The label vCluster puts on every object it syncs to the host; vBilling also reads it on
#: host nodes to find a tenant's dedicated nodes.
VCLUSTER_MANAGED_BY = "vcluster.loft.sh/managed-by"
#: kubetally's own label, on nodes (dedicated to a tenant) and namespaces (tenant namespaces).
TENANT_LABEL = "kubetally.io/tenant"


class TenancyConfig(Strict):
    """Who the tenants are. Tenant ids are built by :mod:`kubetally.sources.kubernetes.tenancy`."""

    #: Discover vCluster tenant clusters from StatefulSets/Deployments labelled ``app=vcluster``.
    vclusters: bool = True
    #: Discover vCluster Platform ``VirtualClusterInstance`` objects (``management.loft.sh/v1``).
    platform: bool = True
    #: Only VirtualClusterInstances whose ``spec.clusterRef.cluster`` is this name (the Platform's
    #: name for the cluster being metered); ``None`` accepts every instance.
    platform_cluster: str | None = None
    #: Namespace label that makes a plain namespace a tenant: value ``"true"`` → tenant
    #: ``namespace/<ns>``; any other value ``v`` → tenant ``tenant/<v>`` (several namespaces of
    #: one customer). ``None`` turns namespace tenants off.
    namespace_label: str | None = TENANT_LABEL
    #: Namespace label whose value ``p`` makes the namespace part of tenant ``project/<p>``.
    #: ``None`` (default) means projects are not tenants (they still fill the ``project`` field).
    project_label: str | None = None
    #: Bill the vCluster control-plane pods' requests (and PVCs) like tenant pods, in addition to
    #: ``control_plane_hours``. Off by default: the control plane is the platform's cost.
    meter_control_plane: bool = False
    #: Label or annotation (annotation first) whose value is the tenant's billing customer id,
    #: e.g. ``billing.example.com/customer-id``: read on the vCluster's StatefulSet/Deployment
    #: or VirtualClusterInstance, else on the tenant's (host) namespace. A destination's
    #: ``customers:`` table wins over it; a tenant with neither follows the destination's
    #: ``unmapped`` rule.
    customer_key: str | None = None
    #: How long a tenant must be missing from a *complete* discovery before it is offboarded.
    offboard_grace: Duration = timedelta(hours=1)


class DedicatedNodeConfig(Strict):
    """Which host nodes belong whole to one tenant (billed from capacity, their pods not again)."""

    #: vBilling's convention: value = the vCluster's name (or its host namespace when unique).
    vcluster_label: str | None = VCLUSTER_MANAGED_BY
    #: kubetally's label; value = the tenant id with ``/`` written as ``.`` (label values cannot
    #: hold ``/``), e.g. ``vcluster.team-a.gpu`` or ``namespace.research``. Wins over the above.
    tenant_label: str | None = TENANT_LABEL


class KubernetesConfig(Strict):
    """Settings of the Kubernetes tenant metering source (``kubernetes:`` in kubetally.yaml)."""

    tenancy: TenancyConfig = Field(default_factory=TenancyConfig)
    dedicated_nodes: DedicatedNodeConfig = Field(default_factory=DedicatedNodeConfig)
    #: Length of the metered periods (records). ``1h`` by default; ``1m``, ``5m``, ``15m`` give
    #: near-real-time records (period ``1m`` …), ``1d`` daily ones.
    window: Duration = timedelta(hours=1)
    #: Wait this long after a period ends before writing it, so late status updates (a
    #: container's ``finishedAt``) are in. ``None``: ``collection.settle_delay``.
    settle_delay: Duration | None = None
    #: How often the agent closes periods and runs the other steps (vBilling ``COLLECTION_INTERVAL``).
    tick_interval: Duration = timedelta(seconds=60)
    #: How often the agent re-discovers tenants (vBilling ``RECONCILE_INTERVAL``).
    reconcile_interval: Duration = timedelta(seconds=30)
    #: Server-side timeout of one watch request; the watch is then resumed from its resourceVersion.
    watch_timeout: Duration = timedelta(minutes=5)
    #: Closed lifetimes are kept this long after the watermark passed them, so late corrections
    #: (a status update that arrives after its period was written) can still revise records.
    journal_retention: Duration = timedelta(days=2)
    #: One process writes a cluster's journal at a time; a holder that stops renewing (crashed)
    #: blocks others for at most this long. The agent renews it every tick.
    writer_lease: Duration = timedelta(minutes=3)
    #: Node label that overrides every cloud label for the capacity type (on-demand, spot, …).
    #: Also record every node's capacity, down and cordoned time, and per period its idle and
    #: over-committed part (provider records, tenant empty; see ``sources/kubernetes/provider.py``).
    capacity: bool = False
    capacity_type_label: str = "kubetally.io/capacity-type"
    #: Node label that overrides GPU model detection with a SKU written by the operator.
    gpu_sku_label: str = "kubetally.io/gpu-sku"
    #: Node label holding the node's physical GPU count, written by the operator; it wins over
    #: GFD's ``nvidia.com/gpu.count``, HAMi's device register and the advertised capacity (for
    #: device plugins that advertise virtual devices and say nothing else).
    gpu_count_label: str = "kubetally.io/gpu-count"

    @field_validator("window")
    @classmethod
    def _known_window(cls, value: timedelta) -> timedelta:
        PeriodKind.for_length(value)  # raises with the accepted values
        return value

    @field_validator("tick_interval", "reconcile_interval", "watch_timeout", "writer_lease")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 1:
            raise ValueError("must be at least 1s")
        return value

    @property
    def period_kind(self) -> PeriodKind:
        return PeriodKind.for_length(self.window)
