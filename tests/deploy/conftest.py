"""The manifests under ``deploy/``, rendered once per session by the real ``kubectl kustomize``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetally.testing import MissingPart

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# The simulated cluster's builders (k8s_builders) are shared with the Kubernetes source's tests.
if str(REPO / "tests" / "kubernetes") not in sys.path:
    sys.path.append(str(REPO / "tests" / "kubernetes"))
#: Every kustomization that can be applied (bases included: an operator may apply one alone).
TARGETS = (
    "base/agent",
    "base/server",
    "overlays/agent-to-server",
    "overlays/single-cluster",
    "overlays/ha-agent",
    "overlays/central-server",
)


def find_kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise MissingPart("kubectl", "apt-get install kubernetes-client")
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    """The real kubectl (its kustomize is what `kubectl apply -k` runs); as tests/conftest.py's
    require(): missing fails under CI=true, skips elsewhere."""
    try:
        return find_kubectl()
    except MissingPart as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real part missing in CI: {exc}")
        pytest.skip(str(exc))


def render(kubectl: str, target: str) -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/<target>`` as a list of objects."""
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / target)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    return {target: render(kubectl, target) for target in TARGETS}


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(``Kind/name``, pod spec) of every workload."""
    out = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            out.append((f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
    return out


def source_files(suffix: str = ".yaml") -> list[Path]:
    return sorted(p for p in DEPLOY.rglob(f"*{suffix}"))
