"""``SimServer``: a scenario served over HTTP on loopback from a background thread.

Tests and the demo talk to it with the same client library production uses against a real
cluster, so nothing Kubernetes-specific is mocked: only the cluster itself is simulated.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
import yaml

from kubetally.errors import KubetallyError
from kubetally.sim.api import SimAPI
from kubetally.sim.faults import Faults
from kubetally.sim.rbac import RBAC
from kubetally.sim.scenario import Scenario, ScenarioError
from kubetally.sim.simulation import Simulation
from kubetally.sim.store import Change

log = logging.getLogger(__name__)


class SimServer:
    """Serve a :class:`Scenario` as a Kubernetes API on ``http://127.0.0.1:<port>``.

    ``port=0`` picks a free port. ``speed`` 0 (default) freezes the virtual clock so only
    :meth:`advance` moves it; ``speed`` > 0 runs it at wall time × speed, firing events on time.
    With ``rbac``, every request needs one of its bearer tokens and is authorized by its rules.
    """

    def __init__(
        self,
        scenario: Scenario,
        port: int = 0,
        host: str = "127.0.0.1",
        speed: float = 0.0,
        rbac: RBAC | None = None,
    ):
        self.scenario = scenario
        self.rbac = rbac
        self.simulation = Simulation(scenario, speed=speed)
        self.faults = Faults()
        self.host = host
        self._requested_port = port
        self._port = 0
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise KubetallyError(
                f"cannot listen on {self.host}:{self._requested_port}: {exc.strerror or exc}"
            ) from None
        sock.listen(128)
        self._port = sock.getsockname()[1]
        api = SimAPI(self.simulation, self.faults, self._stopping, lambda: f"{self.host}:{self._port}", self.rbac)
        config = uvicorn.Config(
            api.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            date_header=False,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"kubetally-sim-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"simulated API server did not start on {self.host}:{self._port}")
            time.sleep(0.01)
        if self.simulation.speed:
            self.simulation.start_clock()
            self._ticker = threading.Thread(target=self._tick, name="kubetally-sim-clock", daemon=True)
            self._ticker.start()
        return self

    def close(self) -> None:
        self._stopping.set()
        self.simulation.store.wake_all()  # open watches end now instead of at their next poll
        if self._server is not None:
            self._server.should_exit = True
        for thread in (self._ticker, self._thread):
            if thread is not None:
                thread.join(timeout=10)
        self._thread = self._ticker = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def wait(self) -> None:
        """Block until the server stops (``sim serve`` in the foreground)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def _tick(self) -> None:
        """Fire scenario events on time while the clock runs at ``speed``."""
        while not self._stopping.is_set():
            wait = self.simulation.seconds_until_next_event()
            if wait is None:
                self._stopping.wait(0.5)
                continue
            if self._stopping.wait(min(wait, 0.5)):
                return
            try:
                self.simulation.tick()
            except ScenarioError as exc:
                log.error("scenario event skipped: %s", exc)

    # ---- the Python API ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def now(self) -> datetime:
        return self.simulation.now

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion (what a list right now would return)."""
        return self.simulation.store.rv

    def advance(self, to: datetime | str) -> list[Change]:
        """Apply every event with ``at <= to`` in order, then set the clock to ``to``."""
        return self.simulation.advance(to)

    def apply(self, event_type: str, obj: dict[str, Any]) -> Change:
        """Inject an ADDED/MODIFIED/DELETED change at the current virtual time."""
        return self.simulation.apply(event_type, obj)

    def fail_next(self, verb: str = "list", resource: str | None = "pods", status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` ``verb`` requests on ``resource`` (plural; None: any) with ``status``."""
        self.faults.arm(verb, resource, status, times)

    def expire_watches(self) -> int:
        """Compact history: open watches get ERROR 410 Expired and end; old RVs get 410 from now on."""
        return self.simulation.store.compact()

    def api_client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this server (plain HTTP; ``token``: a bearer token)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        if token is not None:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    def kubeconfig(self, path: str | Path, token: str | None = None) -> Path:
        """Write a kubeconfig whose current context points at this server (as the bearer
        ``token``'s user, when given); returns ``path``."""
        path = Path(path)
        name = "kubetally-sim"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {"token": token} if token is not None else {}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a client polling for the file never reads half of it.
        partial = path.with_name(path.name + ".partial")
        partial.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        partial.replace(path)
        return path
