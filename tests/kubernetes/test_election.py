"""Leader election over a Lease in the simulated API, with client-go's rules (issue 13).

The elector's clock is injected, so "expired by the observer's own clock since it last saw the
record change" is checked to the tenth of a second without sleeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client
from sqlalchemy import select

from kubetally.app.agent import AgentRunner, AgentSettings
from kubetally.config import load_config
from kubetally.ledger.store import Ledger
from kubetally.sim import Scenario, SimServer
from kubetally.sources.kubernetes.election import ElectionSettings, LeaderElector
from kubetally.sources.kubernetes.tables import leases

NAMESPACE, NAME = "kubetally", "kubetally-agent"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(Scenario.packaged("gpu-cloud")) as server:
        yield server


def settings(identity: str, name: str, **timing: float) -> ElectionSettings:
    values = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0, **timing}
    return ElectionSettings(lease_name=name, namespace=NAMESPACE, identity=identity, **values)


def read(sim: SimServer, name: str) -> client.V1Lease:
    return client.CoordinationV1Api(sim.api_client()).read_namespaced_lease(name, NAMESPACE)


def test_acquire_only_after_the_lease_duration_by_the_observers_clock(sim: SimServer) -> None:
    clock = FakeClock()
    a = LeaderElector(sim.api_client(), settings("a", "expiry"), monotonic=clock)
    b = LeaderElector(sim.api_client(), settings("b", "expiry"), monotonic=clock)
    assert a.try_acquire_or_renew()  # no Lease yet: created, held by a
    first = read(sim, "expiry").spec
    assert (first.holder_identity, first.lease_duration_seconds, first.lease_transitions) == ("a", 15, 0)
    assert not b.try_acquire_or_renew()  # b sees it for the first time: its 15 s start now
    clock.now += 14.9
    assert not b.try_acquire_or_renew()  # unchanged for 14.9 s < 15 s (a stopped renewing)
    clock.now += 0.2
    assert b.try_acquire_or_renew()  # 15.1 s without a change: expired, taken
    taken = read(sim, "expiry").spec
    assert (taken.holder_identity, taken.lease_transitions) == ("b", 1)
    assert taken.acquire_time > first.acquire_time and b.previous_holder == "a"
    # a comes back: the record changed since it last looked, so b's 15 s start now for a.
    assert not a.try_acquire_or_renew()
    # b renews: holder and acquireTime kept, renewTime moves, no new transition.
    assert b.try_acquire_or_renew()
    renewed = read(sim, "expiry").spec
    assert (renewed.holder_identity, renewed.lease_transitions, renewed.acquire_time) == ("b", 1, taken.acquire_time)


def test_a_stale_resource_version_loses_the_round(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    a = LeaderElector(sim.api_client(), settings("a", "conflict"), monotonic=clock)
    b = LeaderElector(sim.api_client(), settings("b", "conflict"), monotonic=clock)
    assert a.try_acquire_or_renew()
    stale = read(sim, "conflict")
    assert a.try_acquire_or_renew()  # a renews: the resourceVersion b would write against is gone
    clock.now += 20
    monkeypatch.setattr(b.api, "read_namespaced_lease", lambda *args, **kwargs: stale)
    assert not b.try_acquire_or_renew()  # its update got 409 Conflict
    assert read(sim, "conflict").spec.holder_identity == "a"


def test_renew_failing_past_the_deadline_stops_leading(sim: SimServer) -> None:
    elector = LeaderElector(
        sim.api_client(), settings("a", "deadline", lease_duration=3, renew_deadline=1.0, retry_period=0.2)
    )
    elector.start()
    try:
        deadline = time.monotonic() + 10
        while not elector.leading and time.monotonic() < deadline:
            time.sleep(0.02)
        assert elector.leading and elector.term == 1
        sim.fail_next("update", "leases", status=500, times=1000)
        failing = time.monotonic()
        while elector.leading and time.monotonic() < failing + 10:
            time.sleep(0.02)
        # Not leading any more, and not before the renew deadline (1 s after the last renewal).
        assert not elector.leading
        assert time.monotonic() - failing >= 1.0 - 0.2  # the last renewal was ≤ one retry before
    finally:
        sim.faults.clear()
        elector.stop()


def test_release_clears_the_holder_as_client_go_release_on_cancel(sim: SimServer) -> None:
    fixed = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    a = LeaderElector(sim.api_client(), settings("a", "release"), wall=lambda: fixed)
    assert a.try_acquire_or_renew()
    assert a.release()
    spec = read(sim, "release").spec
    assert (spec.holder_identity, spec.lease_duration_seconds, spec.lease_transitions) == (None, 1, 0)
    assert spec.renew_time == fixed
    # Released: the next candidate takes it at once, without waiting a lease duration.
    b = LeaderElector(sim.api_client(), settings("b", "release"), monotonic=FakeClock())
    assert b.try_acquire_or_renew()
    assert read(sim, "release").spec.lease_transitions == 1
    assert not a.release()  # not the holder any more: nothing to hand back


def test_losing_the_lease_stops_leading_work_and_a_new_term_starts_afresh(sim: SimServer, tmp_path: Path) -> None:
    config_file = tmp_path / "kubetally.yaml"
    config_file.write_text(
        "kubernetes: {tick_interval: 1s}\n"
        "agent:\n"
        "  leader_election: {enabled: true, lease_name: runner, namespace: kubetally,"
        " lease_duration: 4, renew_deadline: 2, retry_period: 0.25}\n"
    )
    settings = AgentSettings(
        config=load_config([config_file]),
        cluster="gpu-east",
        db=str(tmp_path / "ledger.db"),
        prometheus_url=None,
        destinations=None,
    )

    def until(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    with (
        Ledger.open(settings.db) as ledger,
        AgentRunner(settings, ledger, sim.api_client(), clock=lambda: sim.now) as runner,
    ):
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        try:
            until("the first term", lambda: runner.leading() and runner.kubernetes.watching)
            sim.fail_next("update", "leases", status=500, times=100000)  # renewals fail from now on
            until("leadership to be lost", lambda: not runner.leading())
            # The source of the lost term is stopped without a flush: no watcher left running,
            # and the journal lease of this cluster handed back for the next leader.
            until("the lost term's work to stop", lambda: not runner.kubernetes.started)
            lost = runner.kubernetes
            assert not any(w.is_alive() for w in lost.watchers.values())
            with ledger.engine.connect() as conn:
                assert conn.execute(select(leases).where(leases.c.cluster == "gpu-east")).all() == []
            assert runner.elector is not None
            lost_term = runner.elector.term
            sim.faults.clear()
            # The Lease still names this replica: it takes it back at once, with a fresh source.
            until("a new term", lambda: runner.leading() and runner.kubernetes.watching)
            assert runner.kubernetes is not lost and runner.elector.term > lost_term
        finally:
            sim.faults.clear()
            runner.stop()
            thread.join(timeout=30)
    assert not thread.is_alive()
    assert read(sim, "runner").spec.holder_identity is None  # handed back on stop
