"""Turns a stream of object observations into journal segments (open → closed).

Both ways of running use it: ``collect`` feeds it one LIST per resource; the agent feeds it the
initial LISTs, then watch events, then re-LISTs after a 410. Times come from the objects whenever
they carry them, and from the observation time ``at`` (the agent's clock) only for what no object
field dates:

* a presence opens at its own start evidence when that evidence dates *this* state (a container
  start, a Ready transition, a load balancer's status write), or when the object is seen for the
  first time in the state it was created in (a dedicated node from ``creationTimestamp``);
  otherwise (a node re-labelled to another tenant, a PVC that became Bound) at ``at``;
* a presence ends at its own end evidence (last container ``finishedAt``, the Ready→False
  transition), else on DELETED at ``deletionTimestamp`` (never after ``at``), else at ``at``;
* an object missing from a (re-)LIST was deleted while nobody watched: its segment ends at the
  last time it was known to exist (``last_seen``: the last healthy list/watch confirmation),
  never later. This can under-bill at most the unwatched gap; it never bills time that cannot
  be proven.

A change to a period that was already written (an end that arrives late, an object discovered
late) marks the tracker ``dirty_since``; the runner then re-meters those periods, which the
ledger turns into revisions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from kubetally.config.kubernetes import KubernetesConfig
from kubetally.sources.kubernetes import journal
from kubetally.sources.kubernetes.lifetimes import (
    ROLE_NODE,
    ROLE_POD,
    ROLES_BY_KIND,
    Billed,
    Deriver,
    NodeInfo,
    Presence,
    describe,
    meta,
)
from kubetally.sources.kubernetes.meter import Segment
from kubetally.sources.kubernetes.provider import slim_node
from kubetally.sources.kubernetes.sku import HAMI_REGISTER, UNKNOWN_SKU, GpuIdentity, GpuSharing
from kubetally.sources.kubernetes.tenancy import TenantResolver, labels_of

Key = tuple[str, str]

KINDS = ("Node", "Pod", "PersistentVolumeClaim", "Service")


@dataclass
class _Row:
    """A segment as the tracker holds it; ``seq`` is None until flushed to the journal."""

    uid: str
    role: str
    billed: Billed
    start: datetime
    end: datetime | None = None
    seq: int | None = None
    last_seen: datetime | None = None
    reason: str | None = None

    def segment(self) -> Segment:
        return Segment(self.uid, self.role, self.billed, self.start, self.end, self.seq)


class Frozen:
    """A slimmed object kept as its compact JSON: a tracked pod as nested dicts costs ~3 KB
    (each dict, list and string an object of its own), as bytes a few hundred. Thawed only when
    it is re-derived (tenancy or node changes), which is rare next to how many are held."""

    __slots__ = ("blob", "uid")

    def __init__(self, uid: str, blob: bytes):
        self.uid = uid
        self.blob = blob

    def thaw(self) -> dict[str, Any]:
        value = json.loads(self.blob)
        return value if isinstance(value, dict) else {}


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def freeze(kind: str, obj: Mapping[str, Any]) -> Frozen:
    """:func:`slim`, kept compact (see :class:`Frozen`): what a LIST page is reduced to."""
    slimmed = slim(kind, obj)
    return Frozen(str(meta(slimmed).get("uid") or ""), _dumps(slimmed).encode())


def _uid(obj: Mapping[str, Any] | Frozen) -> str:
    if isinstance(obj, Frozen):
        return obj.uid
    return str(meta(obj).get("uid") or "")


#: Annotations metering reads (a PVC's legacy storage class, HAMi's device register).
KEPT_ANNOTATIONS = ("volume.beta.kubernetes.io/storage-class", HAMI_REGISTER)


def _slim_meta(obj: Mapping[str, Any], keep_managed_fields: bool) -> dict[str, Any]:
    m = meta(obj)
    out = {
        k: m[k]
        for k in ("name", "namespace", "uid", "labels", "creationTimestamp", "deletionTimestamp", "resourceVersion")
        if k in m
    }
    annotations = m.get("annotations")
    if isinstance(annotations, Mapping) and any(k in annotations for k in KEPT_ANNOTATIONS):
        out["annotations"] = {k: annotations[k] for k in KEPT_ANNOTATIONS if k in annotations}
    if keep_managed_fields and "managedFields" in m:
        out["managedFields"] = m["managedFields"]
    return out


def slim(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields metering reads, so thousands of tracked pods stay small in memory."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    out: dict[str, Any] = {"metadata": _slim_meta(obj, kind in ("Service", "PersistentVolumeClaim"))}
    if kind == "Node":
        provider_view = slim_node(obj)
        out["status"] = {"capacity": status.get("capacity") or {}}
        if provider_view["conditions"]:
            out["status"]["conditions"] = provider_view["conditions"]
        if provider_view["spec"]:
            out["spec"] = provider_view["spec"]
    elif kind == "Pod":

        def containers(key: str) -> list[dict[str, Any]]:
            return [
                {k: c[k] for k in ("name", "resources", "restartPolicy") if k in c}
                for c in spec.get(key) or []
                if isinstance(c, Mapping)
            ]

        out["spec"] = {
            "nodeName": spec.get("nodeName"),
            "containers": containers("containers"),
            "initContainers": containers("initContainers"),
            "overhead": spec.get("overhead"),
            "resources": spec.get("resources"),
        }
        out["status"] = {k: status[k] for k in ("phase", "startTime") if k in status}
        if isinstance(status.get("conditions"), list):
            out["status"]["conditions"] = [
                {k: c[k] for k in ("type", "status", "lastTransitionTime") if k in c} if isinstance(c, Mapping) else c
                for c in status["conditions"]
            ]
        for key in ("containerStatuses", "initContainerStatuses"):
            if isinstance(status.get(key), list):
                out["status"][key] = [
                    {k: c[k] for k in ("name", "state", "lastState", "restartCount") if k in c}
                    if isinstance(c, Mapping)
                    else c
                    for c in status[key]
                ]
    elif kind == "PersistentVolumeClaim":
        out["spec"] = {k: spec[k] for k in ("storageClassName", "resources", "volumeName") if k in spec}
        out["status"] = {k: status[k] for k in ("phase", "capacity") if k in status}
    elif kind == "Service":
        out["spec"] = {"type": spec.get("type")}
        out["status"] = {"loadBalancer": status.get("loadBalancer") or {}}
    return out


class Tracker:
    """In-memory state of tracked objects and open segments; journal writes via :meth:`flush`."""

    def __init__(
        self,
        *,
        cluster: str,
        config: KubernetesConfig,
        resolver: TenantResolver,
        warn: Callable[[str], None] | None = None,
    ):
        self.cluster = cluster
        self.config = config
        self._warned: set[str] = set()
        self._warn_sink = warn or (lambda message: None)
        self.node_infos: dict[str, NodeInfo] = {}
        self.deriver = Deriver(config, resolver, self.node_infos, warn=self.warn)
        self.open: dict[Key, _Row] = {}
        self.closed: dict[Key, _Row] = {}
        #: Every tracked object, slimmed and frozen (see :class:`Frozen`), by kind and uid.
        self.objects: dict[str, dict[str, Frozen]] = {kind: {} for kind in KINDS}
        self.first_keys: dict[str, tuple[Any, ...]] = {}
        self.pods_by_node: dict[str, set[str]] = {}
        self.deferred: dict[str, dict[str, Any]] = {}
        self.nodes_synced = False
        #: node name → closed dedicated stretches: a pod starting inside one is billed after it.
        self.dedicated_stretches: dict[str, list[tuple[datetime, datetime]]] = {}
        self.confirmed: dict[str, datetime] = {}
        self.watermark: datetime | None = None
        self.horizon: datetime | None = None
        self.dirty_since: datetime | None = None
        self._dirty: dict[int, _Row] = {}
        self._redated: dict[int, _Row] = {}
        self._inflight: list[_Row] = []
        self._assigned: list[_Row] = []

    # -- messages --------------------------------------------------------------------------

    def warn(self, message: str) -> None:
        """Report each distinct problem once (objects are re-derived often); the memory of what
        was said is bounded, so a long-running agent repeats a problem now and then instead."""
        if message not in self._warned:
            if len(self._warned) >= 10_000:
                self._warned.clear()
            self._warned.add(message)
            self._warn_sink(message)

    # -- resolver --------------------------------------------------------------------------

    @property
    def resolver(self) -> TenantResolver:
        return self.deriver.resolver

    def set_resolver(self, resolver: TenantResolver, at: datetime) -> None:
        """New tenancy knowledge: re-derive every tracked object (nodes first, pods need them)."""
        self.deriver.resolver = resolver
        for kind in KINDS:
            for uid, frozen in list(self.objects[kind].items()):
                if kind == "Node":
                    self._observe_node(uid, frozen.thaw(), at)
                elif kind == "Pod" and uid in self.deferred:
                    continue
                else:
                    self._derive_apply(kind, uid, frozen.thaw(), at)

    # -- loading ---------------------------------------------------------------------------

    def load(self, conn: Connection) -> None:
        """Open segments from the journal (after a restart), and where dedicated nodes ended."""
        for segment in journal.closed_of_role(conn, self.cluster, ROLE_NODE):
            if segment.end is not None:
                self.dedicated_stretches.setdefault(segment.billed.name, []).append((segment.start, segment.end))
        confirmed = journal.confirmations(conn, self.cluster, ROLES_BY_KIND)
        kind_of = {role: kind for kind, roles in ROLES_BY_KIND.items() for role in roles}
        for segment, last_seen in journal.open_segments(conn, self.cluster):
            key = (segment.uid, segment.role)
            seen = confirmed.get(kind_of.get(segment.role, ""))
            if seen is not None and seen > last_seen:
                last_seen = seen
            row = _Row(segment.uid, segment.role, segment.billed, segment.start, None, segment.id, last_seen)
            previous = self.open.get(key)
            if previous is not None:  # cannot happen unless the journal was edited; keep the newest
                self._close(key, previous, row.start, "superseded")
            self.open[key] = row
            if segment.role == ROLE_NODE and segment.billed.name not in self.node_infos:
                # Until the node LIST says more: it was dedicated. If it vanished while we were
                # down, its leftover pods must still not be billed a second time.
                dims = {k: v for meter in segment.billed.meters for k, v in meter.dimensions}
                self.node_infos[segment.billed.name] = NodeInfo(
                    segment.billed.name,
                    GpuIdentity(UNKNOWN_SKU, None, "", ""),
                    GpuSharing(),
                    dims.get("capacity_type", "on-demand"),
                    "",
                    dims.get("node_sku", ""),
                    segment.billed.tenant,
                )

    def preload_history(self, conn: Connection, uids: Iterable[str]) -> None:
        """Closed segments of these objects, so re-seen objects are not billed twice."""
        wanted = [u for u in uids if u]
        for key, segment in journal.last_closed(conn, self.cluster, wanted).items():
            current = self.closed.get(key)
            if current is None or (current.end or segment.start) <= (segment.end or segment.start):
                self.closed[key] = _Row(
                    segment.uid, segment.role, segment.billed, segment.start, segment.end, segment.id
                )

    # -- observations ----------------------------------------------------------------------

    def _trust_key(self, kind: str, obj: Mapping[str, Any]) -> tuple[Any, ...]:
        """The object fields that decide whether it holds something, tenancy aside. Unchanged
        since first seen → its creation-based start evidence still dates the presence."""
        labels = labels_of(obj)
        owner = tuple(labels.get(k, "") for k in ("vcluster.loft.sh/managed-by", "app", "release"))
        if kind == "Node":
            dedicated = self.config.dedicated_nodes
            return tuple(labels.get(k or "", "") for k in (dedicated.tenant_label, dedicated.vcluster_label))
        if kind == "PersistentVolumeClaim":
            return ((obj.get("status") or {}).get("phase"), *owner)
        if kind == "Service":
            status = obj.get("status") or {}
            ingress = bool((status.get("loadBalancer") or {}).get("ingress"))
            return ((obj.get("spec") or {}).get("type"), ingress, *owner)
        return ()

    def observe(self, kind: str, obj: Mapping[str, Any] | Frozen, at: datetime) -> None:
        """An object as listed (already :func:`freeze`-d) or as a watch ADDED/MODIFIED event
        showed it at ``at``."""
        if isinstance(obj, Frozen):
            frozen, obj = obj, obj.thaw()
        else:
            frozen = freeze(kind, obj)
            obj = frozen.thaw()
        uid = frozen.uid
        if not uid:
            self.warn(f"{describe(kind, obj)}: no metadata.uid; ignored")
            return
        self.objects[kind][uid] = frozen
        self.first_keys.setdefault(uid, self._trust_key(kind, obj))
        if kind == "Node":
            self._observe_node(uid, obj, at)
            return
        if kind == "Pod":
            node = str((obj.get("spec") or {}).get("nodeName") or "")
            if node:
                self.pods_by_node.setdefault(node, set()).add(uid)
                if node not in self.node_infos:
                    # A pod may arrive before its node on another watch stream: wait for the
                    # node (or the next tick) rather than bill it with an unknown GPU model.
                    self.deferred[uid] = obj
                    return
            self.deferred.pop(uid, None)
        self._derive_apply(kind, uid, obj, at)

    def _observe_node(self, uid: str, obj: Mapping[str, Any], at: datetime) -> None:
        name = str(meta(obj).get("name") or "")
        info = self.deriver.node_info(obj)
        previous = self.node_infos.get(name)
        self.node_infos[name] = info
        for role, presence in self.deriver.node(obj, info).items():
            self._apply(uid, role, presence, at, self.first_keys.get(uid) == self._trust_key("Node", obj))
        if previous != info:
            pods_at = at
            row = self.open.get((uid, ROLE_NODE))
            if info.dedicated_to and row is not None and row.start < at:
                # Found dedicated after the fact (its tenant was discovered late): the node is
                # billed from its start, so its pods stop being billed from there, not from now.
                pods_at = row.start
            for pod_uid in sorted(self.pods_by_node.get(name, ())):
                pod = self.deferred.pop(pod_uid, None)
                if pod is None and pod_uid in self.objects["Pod"]:
                    pod = self.objects["Pod"][pod_uid].thaw()
                if pod is not None:
                    self._derive_apply("Pod", pod_uid, pod, pods_at)

    def release_deferred(self, at: datetime) -> None:
        """Pods still waiting for a node that never showed: bill them without node knowledge."""
        for uid, pod in sorted(self.deferred.items()):
            self._derive_apply("Pod", uid, pod, at)
        self.deferred.clear()

    def _derive_apply(self, kind: str, uid: str, obj: Mapping[str, Any], at: datetime) -> None:
        first = self.first_keys.get(uid) == self._trust_key(kind, obj)
        node = str((obj.get("spec") or {}).get("nodeName") or "") if kind == "Pod" else ""
        for role, presence in self.deriver.derive(kind, obj).items():
            row = self.open.get((uid, role))
            if presence is not None and presence.start is not None and node and role == ROLE_POD:
                for since, until in self.dedicated_stretches.get(node, ()):
                    if since <= presence.start < until:
                        # The node was billed whole then: the pod's own time starts after it.
                        presence = replace(presence, start=until)
            if node and node not in self.node_infos and row is not None and role == ROLE_POD:
                # The node vanished (deleted while unwatched): what the pod held on it is known
                # from the open segment; keep it, only let the pod's own end close it.
                if presence is not None and presence.end is not None:
                    self._close((uid, role), row, presence.end, "finished")
                continue
            self._apply(uid, role, presence, at, first)

    def delete(self, kind: str, obj: Mapping[str, Any], at: datetime) -> None:
        """A watch DELETED event: end every open presence of the object at its best end."""
        uid = _uid(obj)
        if not uid:
            self.warn(f"{describe(kind, obj)}: DELETED without metadata.uid; ignored")
            return
        obj = slim(kind, obj)
        presences = self.deriver.derive(kind, obj)
        deleted = self.deriver.deleted(kind, obj)
        for role in ROLES_BY_KIND[kind]:
            key = (uid, role)
            row = self.open.get(key)
            presence = presences.get(role)
            if row is None and presence is not None and presence.start is not None and presence.end is not None:
                self._apply(uid, role, presence, at, True)  # finished and deleted before we saw it run
                continue
            if row is None:
                continue
            if presence is not None and presence.end is not None:
                end = presence.end
            elif deleted is not None:
                end = min(deleted, at)
            else:
                end = at
            self._close(key, row, end, "deleted")
        self._forget(kind, uid, obj)

    def _forget(self, kind: str, uid: str, obj: Mapping[str, Any]) -> None:
        self.objects[kind].pop(uid, None)
        self.first_keys.pop(uid, None)
        self.deferred.pop(uid, None)
        for role in ROLES_BY_KIND[kind]:
            self.closed.pop((uid, role), None)
        if kind == "Pod":
            node = str((obj.get("spec") or {}).get("nodeName") or "")
            self.pods_by_node.get(node, set()).discard(uid)

    def resync(
        self, kind: str, objects: Iterable[Mapping[str, Any] | Frozen], at: datetime, conn: Connection | None = None
    ) -> None:
        """A complete LIST of ``kind`` at ``at``: observe everything; end what is gone."""
        objects = list(objects)
        listed = {_uid(o) for o in objects}
        if conn is not None:
            self.preload_history(conn, listed)
        before = self.confirmed.get(kind)
        roles = ROLES_BY_KIND[kind]
        for key, row in list(self.open.items()):
            if key[1] in roles and key[0] not in listed:
                seen = max(t for t in (row.last_seen, before, row.start) if t is not None)
                self._close(key, row, min(seen, at), "gone")
        for uid, frozen in list(self.objects[kind].items()):
            if uid not in listed:
                self._forget(kind, uid, frozen.thaw())
        if kind == "Node":
            for obj in objects:
                self.observe(kind, obj, at)
            self.nodes_synced = True
            self.release_deferred(at)
        else:
            for obj in objects:
                self.observe(kind, obj, at)
            if kind == "Pod":
                # A complete pod LIST after the node LIST: a pod's node that is not known is gone.
                self.release_deferred(at)
        self.confirm(kind, at)

    def confirm(self, kind: str, at: datetime) -> None:
        """Everything open of ``kind`` is known to exist at ``at`` (healthy list/watch)."""
        if self.confirmed.get(kind) is None or self.confirmed[kind] < at:
            self.confirmed[kind] = at

    # -- segments --------------------------------------------------------------------------

    def _mark(self, moment: datetime, end: datetime | None = None) -> None:
        if self.watermark is None or moment >= self.watermark:
            return
        if self.horizon is not None and end is not None and end <= self.horizon:
            return
        moment = max(moment, self.horizon) if self.horizon is not None else moment
        if self.dirty_since is None or moment < self.dirty_since:
            self.dirty_since = moment

    def _apply(self, uid: str, role: str, presence: Presence | None, at: datetime, first: bool) -> None:
        key = (uid, role)
        row = self.open.get(key)
        if presence is None:
            if row is not None:
                self._close(key, row, at, "ended")
            return
        end = presence.end
        if row is not None and row.billed == presence.billed:
            ended = next((e for s, e in presence.past if row.start < e <= at), None)
            if ended is not None:
                # The object records that this state ended (a restart) and began again: what
                # the row held ends there; the stretches after it open below.
                self._close(key, row, ended, "ended")
                row = None
            else:
                if presence.start_exact and presence.start is not None and presence.start < row.start:
                    self._redate(key, row, presence.start)
                if end is not None:
                    self._close(key, row, end, "finished")
                return
        if row is not None:
            change_at = min(at, end) if end is not None else at
            if (
                presence.since is not None
                and row.start <= presence.since < change_at
                and replace(row.billed, meters=presence.billed.meters) == presence.billed
            ):
                # Only the quantities changed, and the object dates that change (a resize's
                # status write): the old segment ends there, not when the change is noticed.
                change_at = presence.since
            self._close(key, row, change_at, "changed")
            start = max(change_at, row.start)
        else:
            if presence.start is None:
                return
            last = self.closed.get(key)
            trusted = presence.start_exact or (first and last is None)
            if last is None and presence.caveat:
                self.warn(presence.caveat)
            for began, ended in presence.past:
                if last is not None and last.end is not None and ended <= last.end:
                    continue
                since = max(began, last.end) if last is not None and last.end is not None else began
                self._add(uid, role, presence.billed, since, ended, at)
                last = self.closed.get(key)
            start = presence.start if trusted else at
            if last is not None and last.end is not None:
                if end is not None and end <= last.end:
                    return  # this finished stretch is already journaled
                start = max(start, last.end)
        self._add(uid, role, presence.billed, start, end, at)

    def _add(self, uid: str, role: str, billed: Billed, start: datetime, end: datetime | None, at: datetime) -> None:
        if end is not None and end <= start:
            return
        if end is not None and self.horizon is not None and end <= self.horizon:
            return  # entirely before the journal horizon: those periods are final
        new = _Row(uid, role, billed, start, end, None, at, "finished" if end is not None else None)
        if end is None:
            self.open[(uid, role)] = new
        else:
            self.closed[(uid, role)] = new
        self._dirty[id(new)] = new
        self._mark(start, end)

    def _redate(self, key: Key, row: _Row, start: datetime) -> None:
        """The object now dates the row's state earlier than it was opened (a pod that restarted
        is billed from ``status.startTime``): move the start back, unless an earlier segment of
        the object or the journal horizon is in the way."""
        last = self.closed.get(key)
        floor = max((t for t in (last.end if last else None, self.horizon) if t is not None), default=None)
        if floor is not None:
            start = max(start, floor)
        if start >= row.start:
            return
        row.start = start
        if row.seq is not None:
            self._redated[id(row)] = row
        self._dirty[id(row)] = row
        self._mark(start)

    def _close(self, key: Key, row: _Row, end: datetime, reason: str) -> None:
        end = max(end, row.start)
        row.end = end
        if row.role == ROLE_NODE:
            self.dedicated_stretches.setdefault(row.billed.name, []).append((row.start, end))
        row.reason = reason
        if self.open.get(key) is row:
            del self.open[key]
        self.closed[key] = row
        self._dirty[id(row)] = row
        self._mark(end)

    def billed_by_seq(self) -> dict[int, Billed]:
        """Journal ``seq`` → billed attributes of every journaled row held in memory (open rows
        and each object's last closed one), so reading segments back can reuse them."""
        out: dict[int, Billed] = {}
        for rows in (self.open, self.closed):
            for row in rows.values():
                if row.seq is not None:
                    out[row.seq] = row.billed
        return out

    # -- persistence -----------------------------------------------------------------------

    def flush(self, conn: Connection) -> None:
        """Write new and closed segments and the confirmations to the journal, inside the
        caller's transaction; call :meth:`flush_committed` or :meth:`flush_failed` after it."""
        self._inflight = list(self._dirty.values())
        new = [row for row in self._inflight if row.seq is None]
        seqs = journal.insert_many(conn, self.cluster, [(r.segment(), r.last_seen or r.start, r.reason) for r in new])
        for row, seq in zip(new, seqs, strict=True):
            row.seq = seq
        self._assigned = new
        inserted = {id(row) for row in new}
        journal.restart_many(
            conn,
            [(row.seq, row.start) for row in self._redated.values() if row.seq is not None and id(row) in self._dirty],
        )
        journal.close_many(
            conn,
            [
                (row.seq, row.end, row.reason or "ended")
                for row in self._inflight
                if id(row) not in inserted and row.seq is not None and row.end is not None
            ],
        )

    def touch(self, conn: Connection, *, segments: bool = True) -> None:
        """Persist the confirmations: one row per kind (see :func:`journal.touch`), done per tick;
        with ``segments`` also ``last_seen_at`` of every open segment, done when periods are
        written and on stop (a restart needs them as of the last tick: the per-kind rows say so)."""
        for kind, seen in self.confirmed.items():
            journal.touch(conn, self.cluster, kind, seen)
            if not segments:
                continue
            roles = ROLES_BY_KIND[kind]
            journal.touch_segments(conn, self.cluster, roles, seen)
            for (_uid, role), row in self.open.items():
                if role in roles and (row.last_seen is None or row.last_seen < seen):
                    row.last_seen = seen

    def flush_committed(self) -> None:
        for row in self._inflight:
            self._dirty.pop(id(row), None)
            self._redated.pop(id(row), None)
        self._inflight, self._assigned = [], []

    def flush_failed(self) -> None:
        """The transaction rolled back: what it inserted does not exist; write it again next time."""
        for row in self._assigned:
            row.seq = None
        self._inflight, self._assigned = [], []
