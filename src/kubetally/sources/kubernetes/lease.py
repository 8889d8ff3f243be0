"""One journal writer per cluster: a lease in the ledger.

Two processes metering the same cluster into the same ledger (an agent and a ``collect``, or two
agent replicas) would each open a segment for the same pod and bill it twice. Whoever writes a
cluster's journal holds its lease; the agent renews it every tick and gives it back on stop, so a
crashed holder blocks others for at most the lease duration. Lease times are wall-clock times
(they are about processes being alive), never the metering clock.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, select, update
from sqlalchemy.exc import IntegrityError

from kubetally.errors import KubetallyError
from kubetally.ledger.store import Ledger
from kubetally.periods import format_time
from kubetally.sources.kubernetes.tables import leases as t


class LeaseHeld(KubetallyError):
    """Another process is writing this cluster's journal."""


def new_holder() -> str:
    """``host/pid/random``: unique per process, readable in messages."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"[:253]


def holder_is_dead(holder: str) -> bool:
    """True when ``holder`` was a process on this host that no longer exists.

    A ``collect`` killed in its first seconds (SIGKILL, OOM) cannot release its lease; without
    this the re-run would be refused until the lease expired and the ledger would stay behind an
    uninterrupted run's. A holder on another host is only ever given up by expiry.
    """
    host, _, rest = holder.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Lease:
    ledger: Ledger
    cluster: str
    holder: str
    duration: timedelta
    #: Holders this process may take over before their lease expires: the previous holder of the
    #: Kubernetes Lease this replica was elected through (it stopped leading before the Lease
    #: could be taken, so it is no longer writing).
    yield_from: set[str] = field(default_factory=set)

    def acquire(self) -> None:
        """Take (or renew) the lease; :class:`LeaseHeld` names the current holder otherwise."""
        now = datetime.now(UTC)
        try:
            with self.ledger.transaction() as conn:
                row = conn.execute(select(t).where(t.c.cluster == self.cluster).with_for_update()).one_or_none()
                if row is None:
                    conn.execute(
                        t.insert().values(
                            cluster=self.cluster, holder=self.holder, acquired_at=now, expires_at=now + self.duration
                        )
                    )
                    return
                if (
                    row.holder != self.holder
                    and row.expires_at > now
                    and row.holder not in self.yield_from
                    and not holder_is_dead(row.holder)
                ):
                    raise LeaseHeld(
                        f"kubernetes: cluster {self.cluster} is being metered by {row.holder} (lease until "
                        f"{format_time(row.expires_at)}); two writers would bill objects twice — stop it, or "
                        "wait for its lease to expire"
                    )
                values = {"holder": self.holder, "expires_at": now + self.duration}
                if row.holder != self.holder:
                    values["acquired_at"] = now
                conn.execute(update(t).where(t.c.cluster == self.cluster).values(**values))
        except IntegrityError as exc:  # another process inserted the row between our read and write
            raise LeaseHeld(f"kubernetes: cluster {self.cluster} was just claimed by another writer") from exc

    def release(self) -> None:
        with self.ledger.transaction() as conn:
            conn.execute(delete(t).where(and_(t.c.cluster == self.cluster, t.c.holder == self.holder)))
