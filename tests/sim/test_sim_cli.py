"""``kubetally sim serve`` as a real process, and ``kubetally sim check``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kubernetes import client, config
from typer.testing import CliRunner

from kubetally.cli.sim import app
from kubetally.testing.net import free_port, wait_for_port

runner = CliRunner()


def test_check_summarises_a_good_scenario() -> None:
    result = runner.invoke(app, ["check", "--scenario", "gpu-cloud"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("gpu-cloud.yaml: ok — now 2026-11-02T10:00:00Z, 31 objects, 6 events")
    assert lines[1:] == [
        "  Namespace: 4",
        "  Node: 7",
        "  PersistentVolume: 3",
        "  PersistentVolumeClaim: 3",
        "  Pod: 8",
        "  Service: 3",
        "  StatefulSet: 2",
        "  VirtualClusterInstance: 1",
        "  events from 2026-11-02T10:17:23Z to 2026-11-02T10:45:12Z",
    ]


def test_check_names_the_bad_object_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "now: 2026-11-01T10:00:00Z\nobjects:\n"
        "  - {apiVersion: v1, kind: Node, metadata: {name: n1, labels: {gpus: 8}}}\n"
    )
    result = runner.invoke(app, ["check", "-s", str(bad)])
    assert result.exit_code == 1
    assert result.output == (
        f"error: {bad}: objects[0] (Node n1): metadata.labels['gpus'] must be a string, not int 8 (quote it in YAML)\n"
    )


def test_serve_runs_until_terminated(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubetally.cli.main",
            "sim",
            "serve",
            "--scenario",
            "gpu-cloud",
            "--port",
            str(port),
            "--speed",
            "0",
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, timeout=30)
        # The port opens before the kubeconfig is written (atomically); wait for the file too.
        deadline = time.monotonic() + 30
        while not kubeconfig.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nodes", timeout=5) as resp:
            assert resp.headers["Date"] == "Mon, 02 Nov 2026 10:00:00 GMT"  # frozen virtual clock
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        nodes = api.list_node(label_selector="nvidia.com/gpu.present=true")
        assert [n.metadata.name for n in nodes.items] == [
            "gpu-a100-01",
            "gpu-a100-mig-01",
            "gpu-h100-01",
            "gpu-t4-ts-01",
            "ip-10-0-87-217.us-west-2.compute.internal",
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert (
        f"at http://127.0.0.1:{port} (virtual time 2026-11-02T10:00:00Z, clock frozen, 31 objects, 6 events)" in output
    )
    assert output.rstrip().endswith("stopped")


def test_serve_refuses_a_bad_speed() -> None:
    result = runner.invoke(app, ["serve", "-s", "gpu-cloud", "--port", "0", "--speed", "-1"])
    assert (result.exit_code, result.output) == (1, "error: --speed must be >= 0, not -1.0\n")


def test_serve_reports_a_busy_port() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", "-s", "gpu-cloud", "--port", str(port), "--speed", "0"])
    assert result.exit_code == 1
    assert result.output == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
