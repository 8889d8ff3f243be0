"""The ledger contract of the Kubernetes source: its categories, items, units and labels.

Other parts (rating, delivery, reports) key prices and backend meters on these names, so they are
defined once here. Every quantity is in hours of something (unit ``h``), exact to the second.
"""

from __future__ import annotations

SOURCE = "kubernetes"
UNIT = "h"

COMPUTE = "compute"
STORAGE = "storage"
NETWORK = "network"
PLATFORM = "platform"

GPU_HOURS = "gpu_hours"
CPU_CORE_HOURS = "cpu_core_hours"
MEMORY_GIB_HOURS = "memory_gib_hours"
NODE_HOURS = "node_hours"
STORAGE_GIB_HOURS = "storage_gib_hours"
LB_HOURS = "lb_hours"
CONTROL_PLANE_HOURS = "control_plane_hours"

#: item → category
ITEMS: dict[str, str] = {
    GPU_HOURS: COMPUTE,
    CPU_CORE_HOURS: COMPUTE,
    MEMORY_GIB_HOURS: COMPUTE,
    NODE_HOURS: COMPUTE,
    STORAGE_GIB_HOURS: STORAGE,
    LB_HOURS: NETWORK,
    CONTROL_PLANE_HOURS: PLATFORM,
}

# Record kinds (what ``name`` names).
NODE = "Node"
POD = "Pod"
PVC = "PersistentVolumeClaim"
SERVICE = "Service"
VIRTUAL_CLUSTER = "VirtualCluster"

# Dimension labels (part of the record id: they split usage into separately priced records).
GPU_SKU = "gpu_sku"
GPU_PROFILE = "gpu_profile"
BILLING_MODE = "billing_mode"
CAPACITY_TYPE = "capacity_type"
NODE_SKU = "node_sku"
STORAGE_CLASS = "storage_class"

DEDICATED = "dedicated"
SHARED = "shared"

# Enrichment labels (not part of the id).
NODE_NAME = "node"
GPU_PRODUCT = "gpu_product"
CAPACITY_TYPE_RAW = "capacity_type_raw"
