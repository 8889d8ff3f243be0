"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection``.

Several agent replicas run; one leads (watches, writes the journal, delivers), the others wait.
The rules are client-go's, so the Lease reads the same in ``kubectl get lease`` as a controller's:

* the holder renews ``renewTime`` every ``retry_period``; if it cannot within ``renew_deadline``
  it stops leading (its work must stop) before anyone else may take over;
* a candidate takes the Lease only when ``holderIdentity`` is empty or the record has not changed
  for ``leaseDurationSeconds`` *by the candidate's own clock since it last saw it change*, so the
  clocks of different nodes never need to agree;
* every write is an ``update`` carrying the ``resourceVersion`` read, so of two candidates only
  one wins (the other gets 409 Conflict and stays a candidate);
* ``release`` (``ReleaseOnCancel``) clears ``holderIdentity`` and sets ``leaseDurationSeconds``
  to 1, so a standby takes over within one retry period instead of a whole lease duration.

The ledger's journal lease (:mod:`.lease`) stays as the fencing guard: a leader that stalled
past its Lease and resumed is refused by the ledger before it can write twice.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubetally.sources.kubernetes.client import describe_api_error

log = logging.getLogger("kubetally.agent")

#: Where a pod's service account says which namespace the pod runs in.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: client-go's JitterFactor for the acquire loop.
JITTER = 1.2


def own_namespace(environ: dict[str, str] | None = None) -> str:
    """The namespace the agent runs in: ``$POD_NAMESPACE`` (downward API), the service
    account's namespace file, else ``default`` (running outside a cluster)."""
    env = os.environ if environ is None else environ
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        text = SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "default"


@dataclass(frozen=True)
class ElectionSettings:
    lease_name: str
    namespace: str
    identity: str
    lease_duration: float
    renew_deadline: float
    retry_period: float


@dataclass(frozen=True)
class LeaseRecord:
    """What a candidate compares to decide whether the holder is still alive."""

    holder: str
    duration: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int


def _record(lease: Any) -> LeaseRecord:
    spec = lease.spec or k8s.V1LeaseSpec()
    return LeaseRecord(
        spec.holder_identity or "",
        int(spec.lease_duration_seconds or 0),
        spec.acquire_time,
        spec.renew_time,
        int(spec.lease_transitions or 0),
    )


class LeaderElector(threading.Thread):
    """Runs the election in a background thread; the agent's loop reads :attr:`leading` and
    :attr:`term` (incremented on every acquisition) and starts or stops its work to match."""

    def __init__(
        self,
        api: Any,
        settings: ElectionSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        super().__init__(name=f"kubetally-election-{settings.lease_name}", daemon=True)
        self.api = k8s.CoordinationV1Api(api)
        self.settings = settings
        self.monotonic = monotonic
        self.wall = wall
        self.stop_event = threading.Event()
        self.changed = threading.Event()
        self._leading = False
        self.term = 0
        #: Who held the Lease when this replica took it ("" when it was free or released).
        self.previous_holder = ""
        self.observed: LeaseRecord | None = None
        self.observed_at = 0.0
        self.last_renew = 0.0
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        return self.settings.identity

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def holder(self) -> str:
        """The holder last observed (this replica's identity while it leads)."""
        return self.observed.holder if self.observed is not None else ""

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        s = self.settings
        while not self.stop_event.is_set():
            # Acquire: retry every retry_period (jittered) until the Lease is ours.
            if not self.try_acquire_or_renew():
                self.stop_event.wait(s.retry_period * (1 + random.random() * (JITTER - 1)))
                continue
            self.term += 1
            self.last_renew = self.monotonic()
            self._set_leading(True)
            log.info(
                "became leader: Lease %s/%s held by %s (term %d%s)",
                s.namespace,
                s.lease_name,
                self.identity,
                self.term,
                f", taken over from {self.previous_holder}" if self.previous_holder else "",
            )
            # Renew every retry_period; give up when no renewal succeeded within renew_deadline.
            while not self.stop_event.wait(s.retry_period):
                if self.try_acquire_or_renew():
                    self.last_renew = self.monotonic()
                    continue
                if self.monotonic() - self.last_renew >= s.renew_deadline:
                    self._set_leading(False)
                    log.error(
                        "lost leadership: Lease %s/%s not renewed within %gs; leading work stops",
                        s.namespace,
                        s.lease_name,
                        s.renew_deadline,
                    )
                    break
            if self.stop_event.is_set():
                return

    def _set_leading(self, value: bool) -> None:
        self._leading = value
        self.changed.set()

    def stop(self) -> None:
        """Stop campaigning and renewing (the Lease is handed back by :meth:`release`)."""
        self.stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=self.settings.retry_period + 5)
        self._leading = False

    # -- one round, as client-go's tryAcquireOrRenew ---------------------------------------

    def try_acquire_or_renew(self) -> bool:
        with self._lock:
            return self._try()

    def _timeout(self) -> float:
        return max(1.0, min(self.settings.renew_deadline / 2, 10.0))

    def _try(self) -> bool:
        s = self.settings
        now = self.wall()
        try:
            lease = self.api.read_namespaced_lease(s.lease_name, s.namespace, _request_timeout=self._timeout())
        except ApiException as exc:
            if exc.status != 404:
                log.warning(
                    "leader election: get Lease %s/%s: %s", s.namespace, s.lease_name, describe_api_error(exc)[1]
                )
                return False
            return self._create(now)
        except Exception as exc:  # transport errors: a round lost, not a crash
            log.warning("leader election: get Lease %s/%s: %s", s.namespace, s.lease_name, describe_api_error(exc)[1])
            return False
        record = _record(lease)
        if record != self.observed:
            self.observed = record
            self.observed_at = self.monotonic()
        if record.holder and record.holder != self.identity and self.observed_at + record.duration > self.monotonic():
            return False  # held, and renewed within its duration as far as we have seen
        ours = record.holder == self.identity
        spec = k8s.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self._duration_seconds(),
            acquire_time=record.acquire_time if ours and record.acquire_time else now,
            renew_time=now,
            lease_transitions=record.transitions if ours else record.transitions + 1,
        )
        lease.spec = spec
        try:
            updated = self.api.replace_namespaced_lease(
                s.lease_name, s.namespace, lease, _request_timeout=self._timeout()
            )
        except Exception as exc:  # 409: another candidate won this round
            log.info("leader election: update Lease %s/%s: %s", s.namespace, s.lease_name, describe_api_error(exc)[1])
            return False
        if not ours:
            self.previous_holder = record.holder
        self.observed = _record(updated)
        self.observed_at = self.monotonic()
        return True

    def _duration_seconds(self) -> int:
        return max(1, round(self.settings.lease_duration))

    def _create(self, now: datetime) -> bool:
        s = self.settings
        lease = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=s.lease_name, namespace=s.namespace),
            spec=k8s.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self._duration_seconds(),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            created = self.api.create_namespaced_lease(s.namespace, lease, _request_timeout=self._timeout())
        except Exception as exc:  # 409 AlreadyExists: another candidate created it first
            log.info("leader election: create Lease %s/%s: %s", s.namespace, s.lease_name, describe_api_error(exc)[1])
            return False
        self.previous_holder = ""
        self.observed = _record(created)
        self.observed_at = self.monotonic()
        return True

    # -- hand back -------------------------------------------------------------------------

    def release(self) -> bool:
        """Clear ``holderIdentity`` if this replica still holds the Lease (client-go's
        ReleaseOnCancel): a standby takes over at its next retry, not after a lease duration."""
        s = self.settings
        self._leading = False
        with self._lock:
            try:
                lease = self.api.read_namespaced_lease(s.lease_name, s.namespace, _request_timeout=self._timeout())
                record = _record(lease)
                if record.holder != self.identity:
                    return False
                now = self.wall()
                lease.spec = k8s.V1LeaseSpec(
                    lease_duration_seconds=1,
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=record.transitions,
                )
                self.api.replace_namespaced_lease(s.lease_name, s.namespace, lease, _request_timeout=self._timeout())
            except Exception as exc:
                log.warning(
                    "leader election: could not release Lease %s/%s: %s (it expires in %ss)",
                    s.namespace,
                    s.lease_name,
                    describe_api_error(exc)[1],
                    self._duration_seconds(),
                )
                return False
        log.info("released Lease %s/%s", s.namespace, s.lease_name)
        return True
