"""A real Prometheus on a loopback port, over a TSDB built from OpenMetrics test data.

Tests never mock Prometheus: PromQL semantics (lookback, ``rate``/``increase`` extrapolation,
counter resets, closed range selectors in 2.x) are exactly what a metering system gets wrong,
so the tests run the Debian ``prometheus`` binary over blocks made with
``promtool tsdb create-blocks-from openmetrics``.

Two traps this module handles so tests do not have to:

* Prometheus deletes blocks older than its retention *at startup*. Test data sits at fixed
  dates in the past, so the server runs with a retention of a century.
* ``promtool`` wants OpenMetrics with every family contiguous, samples of a series in time
  order, timestamps in seconds and a final ``# EOF``; :class:`OpenMetrics` writes exactly that.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from kubetally.testing import MissingPart
from kubetally.testing.net import free_port

#: Far beyond any fixed test date; blocks older than the retention are deleted at startup.
TEST_RETENTION = "36500d"
_INSTALL_HINT = "apt-get install prometheus"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Sample = tuple[int, Decimal | int | str]


def binaries() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``, or :class:`MissingPart` with the install hint."""
    prometheus = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    if not prometheus or not promtool:
        raise MissingPart("prometheus", _INSTALL_HINT)
    return prometheus, promtool


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class _Family:
    kind: str
    series: dict[tuple[tuple[str, str], ...], dict[int, str]] = field(default_factory=dict)


class OpenMetrics:
    """Collects test series and renders them in the form ``promtool`` imports.

    Counters are declared with their full sample name (``x_total``); the family is typed
    ``counter`` with the ``_total`` suffix stripped, as OpenMetrics requires.
    """

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def add(
        self,
        name: str,
        labels: Mapping[str, str],
        samples: Iterable[Sample],
        *,
        kind: str = "gauge",
    ) -> None:
        """Add samples (unix seconds, value) of one series; a series may be added in parts."""
        if not _NAME.match(name):
            raise ValueError(f"not a metric name: {name!r}")
        for key in labels:
            if not _LABEL.match(key):
                raise ValueError(f"{name}: not a label name: {key!r}")
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"{name}: counter sample names must end in _total")
        family_name = name.removesuffix("_total") if kind == "counter" else name
        family = self._families.setdefault(family_name, _Family(kind))
        if family.kind != kind:
            raise ValueError(f"{family_name}: declared both {family.kind} and {kind}")
        series_key = tuple(sorted((k, str(v)) for k, v in labels.items() if str(v) != ""))
        points = family.series.setdefault(series_key, {})
        for ts, value in samples:
            if ts in points:
                raise ValueError(f"{name}{dict(series_key)}: two samples at {ts}")
            points[int(ts)] = str(value)

    def render(self) -> str:
        lines: list[str] = []
        for family_name in sorted(self._families):
            family = self._families[family_name]
            sample_name = f"{family_name}_total" if family.kind == "counter" else family_name
            lines.append(f"# TYPE {family_name} {family.kind}")
            for key in sorted(family.series):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                prefix = f"{sample_name}{{{label_text}}}" if label_text else sample_name
                points = family.series[key]
                lines.extend(f"{prefix} {points[ts]} {ts}" for ts in sorted(points))
        lines.append("# EOF")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        path.write_text(self.render(), encoding="utf-8")
        return path


def build_tsdb(openmetrics: str | Path, directory: Path) -> Path:
    """Turn OpenMetrics text (or a file of it) into TSDB blocks under ``directory``."""
    _, promtool = binaries()
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(openmetrics, Path):
        source = openmetrics
    else:
        source = directory.parent / "input.om"
        source.write_text(openmetrics, encoding="utf-8")
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source), str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool could not import {source}: {result.stderr.strip() or result.stdout}")
    return directory


@dataclass
class PrometheusServer:
    """A running ``prometheus``; :attr:`url` is its base URL on 127.0.0.1."""

    port: int
    root: Path
    process: subprocess.Popen[bytes]
    #: "https" when started with a web config holding ``tls_server_config``
    scheme: str = "http"
    #: httpx keyword arguments the readiness probe needs (verify=, auth=, cert=)
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        openmetrics: str | Path | None = None,
        *,
        ready_timeout: float = 60.0,
        web_config: str | None = None,
        probe: dict[str, Any] | None = None,
    ) -> PrometheusServer:
        """Build the TSDB (if data is given), start the server and wait until it is ready.

        Raises :class:`MissingPart` before doing anything when the binaries are absent, so
        ``require(PrometheusServer.start)`` can turn that into a skip or a CI failure.
        """
        prometheus, _ = binaries()
        root = Path(tempfile.mkdtemp(prefix="kubetally-prom-"))
        try:
            data = root / "data"
            if openmetrics is not None:
                build_tsdb(openmetrics, data)
            else:
                data.mkdir()
            config = root / "prometheus.yml"
            config.write_text("global:\n  evaluation_interval: 1h\nscrape_configs: []\n", encoding="utf-8")
            extra = []
            if web_config is not None:
                # Prometheus' own TLS and basic auth (``--web.config.file``), as operators run it.
                web = root / "web.yml"
                web.write_text(web_config, encoding="utf-8")
                extra.append(f"--web.config.file={web}")
            port = free_port()
            log = (root / "prometheus.log").open("wb")
            process = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--storage.tsdb.retention.time={TEST_RETENTION}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        scheme = "https" if web_config is not None and "tls_server_config" in web_config else "http"
        server = cls(port=port, root=root, process=process, scheme=scheme, probe=dict(probe or {}))
        try:
            server.wait_ready(ready_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log()[-2000:]}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1.0, **self.probe).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop this server (only this process) and delete its data."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def prometheus_server(openmetrics: str | Path | None = None) -> Iterator[PrometheusServer]:
    """``with prometheus_server(text) as prom: ... prom.url``."""
    server = PrometheusServer.start(openmetrics)
    try:
        yield server
    finally:
        server.stop()
