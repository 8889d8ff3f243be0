"""What vBilling meters from Prometheus, as kubetally items: for an agent that gets only vBilling's
``PROMETHEUS_URL`` and no cost-model items.

vBilling queries DCGM for GPU utilisation and the CNI/cAdvisor counters for network egress when
``PROMETHEUS_URL`` is set. The matching built-in presets are ``dcgm`` (its ``GpuUtilization``
item) and ``network`` (``NetworkEgressBytes``). DCGM's ``GpuAllocation`` is left out on purpose:
GPU allocation is what the Kubernetes source meters as ``gpu_hours``, and a second allocation
item from DCGM would bill the same GPU twice.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

#: preset → the items of it vBilling's PROMETHEUS_URL stands for.
VBILLING_ITEMS: dict[str, tuple[str, ...]] = {"dcgm": ("GpuUtilization",), "network": ("NetworkEgressBytes",)}


def vbilling_documents() -> list[tuple[str, Any]]:
    """Item and display documents for :func:`kubetally.config.load_config`'s ``extra_documents``
    (each a bare list: items, then display entries reduced to the methods of those items)."""
    documents: list[tuple[str, Any]] = []
    for preset, names in VBILLING_ITEMS.items():
        path = resources.files("kubetally.config") / "presets" / f"{preset}.yaml"
        doc = yaml.safe_load(path.read_text()) or {}
        source = f"preset {preset} (vBilling PROMETHEUS_URL)"
        items = [item for item in doc.get("items", []) if item.get("item") in names]
        display = []
        for entry in doc.get("display", []):
            methods = [m for m in entry.get("methods", []) if m.get("item") in names]
            if methods:
                display.append({**entry, "methods": methods})
        documents.append((source, items))
        if display:
            documents.append((source, display))
    return documents
