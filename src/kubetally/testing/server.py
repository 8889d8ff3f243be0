"""A real ``kubetally server`` process (uvicorn) on a loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import kubetally
from kubetally.testing.net import free_port

#: The source tree this kubetally was imported from, so the child runs the same code.
SOURCE = Path(kubetally.__file__).resolve().parent.parent


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child ``python -m kubetally.cli.main`` running this source tree."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{SOURCE}{os.pathsep}{path}" if path else str(SOURCE), **(extra or {})}


@dataclass
class ServerProcess:
    db: str
    args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        command = [sys.executable, "-m", "kubetally.cli.main", "server", "--db", self.db, "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, *self.args], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"kubetally server exited with {self.process.returncode}: {err.strip()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"kubetally server not ready on {self.url} after {timeout}s")

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()


@contextmanager
def server_process(db: str, *args: str) -> Iterator[ServerProcess]:
    server = ServerProcess(db, args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``kubetally ARGS`` from this source tree; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", *args],
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
