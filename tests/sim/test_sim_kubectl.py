"""``kubectl --server`` against ``kubetally sim serve``: the simulator speaks what kubectl speaks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from kubetally.testing.net import free_port, wait_for_port


@pytest.fixture(scope="module")
def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("real part missing in CI: kubectl (apt-get install kubernetes-client)")
        pytest.skip("kubectl is not installed (apt-get install kubernetes-client)")
    return found


@pytest.fixture(scope="module")
def server() -> object:
    port = free_port()
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def run(kubectl: str, server: str, *args: str) -> str:
    result = subprocess.run(
        [kubectl, "--server", server, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_get_nodes_by_label(kubectl: str, server: str) -> None:
    out = run(kubectl, server, "get", "nodes", "-l", "nvidia.com/gpu.present=true", "-o", "name")
    assert out.split() == [
        "node/gpu-a100-01",
        "node/gpu-a100-mig-01",
        "node/gpu-h100-01",
        "node/gpu-t4-ts-01",
        "node/ip-10-0-87-217.us-west-2.compute.internal",
    ]


def test_get_synced_pods_and_the_custom_resource(kubectl: str, server: str) -> None:
    pods = run(kubectl, server, "get", "pods", "-A", "-l", "vcluster.loft.sh/managed-by=team-a", "-o", "name")
    assert pods.split() == ["pod/llm-pretrain-0-x-training-x-team-a", "pod/notebook-7d9f8c6b5-kx2lp-x-default-x-team-a"]
    vcis = run(
        kubectl,
        server,
        "get",
        "virtualclusterinstances",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{'\\n'}{end}",
    )
    assert vcis.split() == ["p-research/team-b"]
