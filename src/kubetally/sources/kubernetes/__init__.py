"""Kubernetes tenant metering: cluster state → usage records per tenant, exact to the second.

Usage is integrated over object lifetimes, never sampled and multiplied by an interval
(vBilling v0.1's mistake, ../shared/reference/vbilling.md §1.2).

**Tenants** (:mod:`.tenancy`) — ids are printable ASCII and collision-free (``/`` cannot occur in
Kubernetes names): ``vcluster/<host-namespace>/<name>`` (StatefulSet/Deployment ``app=vcluster``,
or a Platform ``VirtualClusterInstance`` through ``spec.clusterRef``), ``namespace/<ns>`` and
``tenant/<value>`` (namespace label ``kubernetes.tenancy.namespace_label``, default
``kubetally.io/tenant``), ``project/<p>`` (``kubernetes.tenancy.project_label``). A failed LIST
never offboards; a tenant missing from complete discoveries for ``offboard_grace`` is.

**What is billed** (:mod:`.lifetimes`, :mod:`.items`) — category ``compute``: ``gpu_hours``
(``gpu_sku``, ``gpu_profile`` for MIG/shared, ``billing_mode`` dedicated|shared,
``capacity_type``), ``cpu_core_hours``, ``memory_gib_hours``, ``node_hours`` (``node_sku``);
``storage``: ``storage_gib_hours`` (``storage_class``); ``network``: ``lb_hours``; ``platform``:
``control_plane_hours``. Dedicated nodes (node label ``vcluster.loft.sh/managed-by=<vcluster>`` or
``kubetally.io/tenant=<tenant id with dots>``) are billed whole from capacity and their pods are
not billed again; tenant pods elsewhere by effective requests from first container start to last
container finish; MIG slices as compute slices / 7 (/ 4 on A30); time-sliced GPUs as
1 / replicas. GPU models get one canonical SKU across label dialects (:mod:`.sku`). Capacity
type is a dimension, never a discount (:mod:`.capacity`).

**Exactness and rounding** (:mod:`.meter`) — intervals are whole seconds; quantities are exact
fractions; per record ``usage = round_half_even(Σ seconds × quantity / 3600, 9 places)``, done
once on the exact sum.

**Running** — ``kubetally collect --kubernetes`` (:func:`.run.collect_kubernetes`) computes closed
periods from the current state; ``kubetally agent`` (:class:`.agent.KubernetesAgent`) lists and
watches (resourceVersion, bookmarks, re-list on 410) and keeps a lifetime journal in the ledger
(:mod:`.journal`, :mod:`.tables`), so deletions between periods are billed to the second and a
restart resumes with nothing lost or doubled. Objects that vanished while nobody watched end at
the last time they were confirmed to exist. Periods are hourly by default; ``kubernetes.window``
may be ``1m``, ``5m`` or ``15m`` (records with ``period`` ``"1m"`` …) or ``1d``.

Other parts use :class:`.tenancy.TenantResolver` (``tenant_for(namespace)``) and
:func:`.registry.known_tenants` / :func:`.registry.load_resolver`.
"""
