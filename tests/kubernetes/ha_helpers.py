"""Agent child processes for the HA tests: start, probe, scrape, signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

import kubetally as package

MAIN = Path(__file__).resolve().parent / "ha_agent_main.py"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0, every: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class AgentProcess:
    """``kubetally agent`` in a child process, with its health and metrics listener."""

    def __init__(self, name: str, folder: Path, *args: str, log_format: str = "text"):
        self.name = name
        self.port = free_port()
        self.log = folder / f"{name}.log"
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "PYTHONPATH": str(Path(package.__file__).parents[1]),
        }
        command = [sys.executable, str(MAIN), "--log-format", log_format, "agent", *args]
        command += ["--listen", f"127.0.0.1:{self.port}", "--log-level", "info"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        """True while running; a process that exited fails the test with its output."""
        if self.process.poll() is not None:
            raise AssertionError(f"agent {self.name} exited with {self.process.returncode}:\n{self.output()}")
        return True

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = self.get("/metrics")
        if status != 200:
            return {}
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
