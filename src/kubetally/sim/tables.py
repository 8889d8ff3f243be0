"""Server-side printing (``meta.k8s.io/v1 Table``), which ``kubectl get`` asks for.

kubectl requests ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the columns
the server chooses, so ``kubectl --server <sim> get nodes`` looks as against a real cluster. The
columns follow the apiserver's printers where they are cheap to derive; everything gets NAME and
AGE, with age measured on the virtual clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubetally.periods import parse_time
from kubetally.sim.resources import ResourceType
from kubetally.sim.selectors import field_value


def wants_table(accept: str | None) -> bool:
    return accept is not None and "as=Table" in accept and "g=meta.k8s.io" in accept


def human_duration(seconds: int) -> str:
    """kubectl's ``duration.HumanDuration`` (``45s``, ``3m20s``, ``5h``, ``12d``)."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(obj: Mapping[str, Any], now: datetime) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(created, str):
        return "<unknown>"
    return human_duration(int((now - parse_time(created)).total_seconds()))


def _node_status(obj: Mapping[str, Any]) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            status = "Ready" if condition.get("status") == "True" else "NotReady"
            break
    else:
        status = "Unknown"
    if (obj.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


Column = tuple[str, str, Callable[[Mapping[str, Any]], Any]]


def _path(path: str, default: str = "") -> Callable[[Mapping[str, Any]], str]:
    return lambda obj: field_value(obj, path) or default


def _external_ips(obj: Mapping[str, Any]) -> str:
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress) or "<none>"


_EXTRA: dict[str, list[Column]] = {
    "Pod": [
        ("Status", "string", _path("status.phase", "Unknown")),
        ("Node", "string", _path("spec.nodeName", "<none>")),
    ],
    "Node": [("Status", "string", _node_status), ("Version", "string", _path("status.nodeInfo.kubeletVersion"))],
    "Namespace": [("Status", "string", _path("status.phase"))],
    "PersistentVolumeClaim": [
        ("Status", "string", _path("status.phase")),
        ("Capacity", "string", _path("status.capacity.storage")),
    ],
    "Service": [("Type", "string", _path("spec.type", "ClusterIP")), ("External-IP", "string", _external_ips)],
}


def table(
    rtype: ResourceType, objects: Sequence[Mapping[str, Any]], now: datetime, list_meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Table of ``objects`` with PartialObjectMetadata row objects (kubectl's default)."""
    columns: list[Column] = [
        ("Name", "string", lambda o: o["metadata"]["name"]),
        *_EXTRA.get(rtype.kind, []),
        ("Age", "string", lambda o: _age(o, now)),
    ]
    definitions = [
        {"name": name, "type": kind, "format": "name" if name == "Name" else "", "description": "", "priority": 0}
        for name, kind, _ in columns
    ]
    rows = [
        {
            "cells": [cell(obj) for _, _, cell in columns],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            },
        }
        for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta or {},
        "columnDefinitions": definitions,
        "rows": rows,
    }
