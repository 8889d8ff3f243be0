"""Watches through ``kubernetes.watch.Watch``: order, resourceVersions, bookmarks, 410 Expired."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubetally.sim import SimServer

Seen = tuple[str, ...]


def summary(event: dict[str, Any]) -> Seen:
    raw = event["raw_object"]
    meta = raw.get("metadata") or {}
    if event["type"] == "BOOKMARK":
        return ("BOOKMARK", meta["resourceVersion"])
    if event["type"] == "ERROR":
        return ("ERROR", str(raw["code"]), raw["reason"])
    return (event["type"], meta.get("name", ""), meta["resourceVersion"])


@contextmanager
def watching(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[queue.Queue[Any]]:
    """Stream in a background thread; the queue gets event summaries, then an exception or None."""
    events: queue.Queue[Any] = queue.Queue()
    w = watch.Watch()

    def run() -> None:
        try:
            for event in w.stream(func, *args, **kwargs):
                events.put(summary(event))
            events.put(None)
        except Exception as exc:
            events.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield events
    finally:
        w.stop()
        thread.join(timeout=10)


def take(events: queue.Queue[Any], count: int) -> list[Any]:
    return [events.get(timeout=5) for _ in range(count)]


def test_watch_streams_events_in_order_after_advance_with_bookmarks(sim: SimServer, core: client.CoreV1Api) -> None:
    rv = core.list_pod_for_all_namespaces().metadata.resource_version
    assert rv == "9"
    with watching(
        core.list_pod_for_all_namespaces, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=30
    ) as events:
        time.sleep(0.2)  # the watch is open before the clock moves
        changes = sim.advance("2026-11-01T10:30:00Z")
        assert [(c.type, c.obj["metadata"]["name"], c.rv) for c in changes] == [
            ("ADDED", "gpu-h100-02", 10),
            ("MODIFIED", "notebook", 11),
            ("ADDED", "infer", 12),
        ]
        assert take(events, 3) == [("MODIFIED", "notebook", "11"), ("ADDED", "infer", "12"), ("BOOKMARK", "12")]
        sim.advance("2026-11-01T11:00:00Z")
        assert take(events, 2) == [("DELETED", "trainer-0", "13"), ("BOOKMARK", "13")]
        assert sim.now.isoformat() == "2026-11-01T11:00:00+00:00"


def test_bookmarks_advance_a_watch_whose_resource_saw_no_change(sim: SimServer, core: client.CoreV1Api) -> None:
    with watching(
        core.list_namespaced_pod, "team-b", resource_version="9", allow_watch_bookmarks=True, timeout_seconds=30
    ) as events:
        sim.advance("2026-11-01T10:15:00Z")  # only a node changes
        assert take(events, 1) == [("BOOKMARK", "10")]
        sim.advance("2026-11-01T10:45:00Z")  # one batch (11-13): one bookmark at its end
        assert take(events, 2) == [("ADDED", "infer", "12"), ("BOOKMARK", "13")]


def test_no_bookmarks_unless_asked(sim: SimServer, core: client.CoreV1Api) -> None:
    sim.advance("2026-11-01T11:00:00Z")
    with watching(core.list_node, resource_version="9", timeout_seconds=1) as events:
        assert take(events, 2) == [("ADDED", "gpu-h100-02", "10"), None]


def test_watch_without_resource_version_starts_with_synthetic_added(sim: SimServer, core: client.CoreV1Api) -> None:
    with watching(core.list_node, label_selector="pool=gpu", allow_watch_bookmarks=True, timeout_seconds=30) as events:
        assert take(events, 2) == [("ADDED", "gpu-a100-01", "3"), ("ADDED", "gpu-h100-01", "2")]
        sim.advance("2026-11-01T10:15:00Z")
        assert take(events, 2) == [("ADDED", "gpu-h100-02", "10"), ("BOOKMARK", "10")]


def test_watch_from_an_old_resource_version_replays_history(sim: SimServer, core: client.CoreV1Api) -> None:
    sim.advance("2026-11-01T11:00:00Z")
    with watching(
        core.list_namespaced_pod, "team-a", resource_version="5", allow_watch_bookmarks=True, timeout_seconds=30
    ) as events:
        assert take(events, 5) == [
            ("ADDED", "notebook", "6"),
            ("BOOKMARK", "9"),
            ("MODIFIED", "notebook", "11"),
            ("DELETED", "trainer-0", "13"),
            ("BOOKMARK", "13"),
        ]


def test_an_object_leaving_the_selector_is_deleted_for_that_watch(sim: SimServer, core: client.CoreV1Api) -> None:
    with watching(
        core.list_pod_for_all_namespaces,
        field_selector="status.phase=Running",
        resource_version="9",
        timeout_seconds=30,
    ) as events:
        sim.advance("2026-11-01T10:30:00Z")
        assert take(events, 2) == [("DELETED", "notebook", "11"), ("ADDED", "infer", "12")]


def test_deleted_with_only_identity_carries_the_last_state(sim: SimServer, core: client.CoreV1Api) -> None:
    sim.advance("2026-11-01T11:00:00Z")
    stream = watch.Watch().stream(core.list_namespaced_pod, "team-a", resource_version="12", timeout_seconds=1)
    deleted = next(stream)
    stream.close()
    assert deleted["type"] == "DELETED"
    pod = deleted["object"]
    assert (pod.metadata.name, pod.spec.node_name, pod.metadata.labels["app"]) == (
        "trainer-0",
        "gpu-h100-01",
        "trainer",
    )
    assert pod.metadata.resource_version == "13"
    assert pod.metadata.deletion_timestamp is None  # kept as given: no deletionTimestamp invented
    assert pod.kind == "Pod"


def test_watch_timeout_ends_with_a_bookmark_at_the_last_processed_rv(sim: SimServer, core: client.CoreV1Api) -> None:
    with watching(core.list_node, resource_version="9", allow_watch_bookmarks=True, timeout_seconds=1) as events:
        assert take(events, 2) == [("BOOKMARK", "9"), None]


def test_expire_watches_ends_open_watches_with_410(sim: SimServer, core: client.CoreV1Api) -> None:
    with watching(core.list_pod_for_all_namespaces, resource_version="9", timeout_seconds=30) as events:
        sim.advance("2026-11-01T10:30:00Z")
        assert take(events, 2) == [("MODIFIED", "notebook", "11"), ("ADDED", "infer", "12")]
        assert sim.expire_watches() == 13
        error = events.get(timeout=5)
    # With timeout_seconds the client does not retry: it raises the ERROR event's Status as ApiException.
    assert isinstance(error, ApiException)
    assert (error.status, error.reason) == (410, "Expired: too old resource version: 12 (13)")


def test_rewatch_from_an_old_rv_after_expiry_is_410_and_a_fresh_list_recovers(
    sim: SimServer, core: client.CoreV1Api
) -> None:
    sim.expire_watches()
    # Without timeout_seconds the client retries once from the same RV, then raises.
    with pytest.raises(ApiException) as caught:
        for _ in watch.Watch().stream(core.list_node, resource_version="9"):
            pass
    assert (caught.value.status, caught.value.reason) == (410, "Expired: too old resource version: 9 (10)")
    fresh = core.list_node()
    assert fresh.metadata.resource_version == "10"
    with watching(core.list_node, resource_version=fresh.metadata.resource_version, timeout_seconds=30) as events:
        sim.advance("2026-11-01T10:15:00Z")
        assert take(events, 1) == [("ADDED", "gpu-h100-02", "11")]


def test_the_raw_error_event_on_the_wire(sim: SimServer) -> None:
    sim.expire_watches()
    with urllib.request.urlopen(f"{sim.url}/api/v1/nodes?watch=1&resourceVersion=5", timeout=5) as resp:
        assert resp.status == 200
        line = resp.readline()
        assert resp.readline() == b""
    assert json.loads(line) == {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version: 5 (10)",
            "reason": "Expired",
            "code": 410,
        },
    }


def test_fail_next_watch(sim: SimServer, core: client.CoreV1Api) -> None:
    sim.fail_next(verb="watch", resource="nodes", status=503)
    with pytest.raises(ApiException) as caught:
        next(iter(watch.Watch().stream(core.list_node, timeout_seconds=1)))
    assert caught.value.status == 503
    with watching(core.list_node, label_selector="pool=system", timeout_seconds=1) as events:
        assert take(events, 1) == [("ADDED", "cpu-01", "9")]


def test_apply_injects_an_event_now(sim: SimServer, core: client.CoreV1Api) -> None:
    sim.advance("2026-11-01T10:05:00Z")
    new_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "debug", "namespace": "team-a"},
        "spec": {"nodeName": "cpu-01", "containers": [{"name": "sh", "image": "busybox"}]},
    }
    with watching(
        core.list_namespaced_pod, "team-a", resource_version="9", allow_watch_bookmarks=True, timeout_seconds=30
    ) as events:
        change = sim.apply("ADDED", new_pod)
        assert change.rv == 10
        assert take(events, 2) == [("ADDED", "debug", "10"), ("BOOKMARK", "10")]
    created = core.read_namespaced_pod("debug", "team-a").metadata.creation_timestamp
    assert created.isoformat() == "2026-11-01T10:05:00+00:00"
    new_pod["metadata"]["name"] = "mutated-after-apply"  # the server kept its own copy
    assert core.read_namespaced_pod("debug", "team-a").metadata.name == "debug"


def test_advance_cannot_go_back(sim: SimServer) -> None:
    sim.advance("2026-11-01T10:20:00Z")
    with pytest.raises(ValueError, match="cannot move the clock back from 2026-11-01T10:20:00Z"):
        sim.advance("2026-11-01T10:10:00Z")


def test_running_clock_fires_events_on_time(scenario) -> None:
    # 3600 virtual seconds per wall second: the 10:15 event is due after 0.25 s.
    with SimServer(scenario, speed=3600) as sim:
        api = client.CoreV1Api(sim.api_client())
        with watching(api.list_node, resource_version="9", timeout_seconds=30) as events:
            assert take(events, 1) == [("ADDED", "gpu-h100-02", "10")]
        assert sim.now >= sim.scenario.events[1].at


def test_send_initial_events_ends_the_initial_state_with_an_annotated_bookmark(sim: SimServer) -> None:
    query = (
        "watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
        "&labelSelector=pool%3Dgpu&timeoutSeconds=1"
    )
    with urllib.request.urlopen(f"{sim.url}/api/v1/nodes?{query}", timeout=5) as resp:
        lines = [json.loads(line) for line in resp.read().splitlines()]
    assert [
        (e["type"], e["object"]["metadata"].get("name"), e["object"]["metadata"]["resourceVersion"]) for e in lines
    ] == [("ADDED", "gpu-a100-01", "3"), ("ADDED", "gpu-h100-01", "2"), ("BOOKMARK", None, "9")]
    assert lines[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{sim.url}/api/v1/nodes?watch=1&sendInitialEvents=true", timeout=5)
    assert caught.value.code == 422
