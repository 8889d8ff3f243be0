"""``kubetally collect --kubernetes`` and ``kubetally agent`` from the command line, against the
simulator through a kubeconfig; the ``kubernetes:`` config section; vBilling's environment."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from k8s_builders import control_plane_pod, namespace, node, pod, serve, t, usage, vcluster
from typer.testing import CliRunner

from kubetally.app.settings import vbilling_environment
from kubetally.cli.main import app
from kubetally.config import load_config
from kubetally.config.kubernetes import KubernetesConfig
from kubetally.errors import ConfigError, SourceError
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time

TEAM_A = "vcluster/vcluster-team-a/team-a"
SHARED = ("billing_mode=shared", "capacity_type=spot")
PROM_ITEMS = ["GpuUtilization", "NetworkEgressBytes", "GpuAllocation"]


def cluster() -> list[dict]:
    return [
        namespace("vcluster-team-a"),
        vcluster("team-a", "vcluster-team-a"),
        node("cpu-system"),
        node(
            "g5",
            labels={"nvidia.com/gpu.product": "NVIDIA-A10G", "eks.amazonaws.com/capacityType": "SPOT"},
            gpus={"nvidia.com/gpu": "1"},
        ),
        control_plane_pod("team-a", "vcluster-team-a", ready_since=t("09:00:00")),
        # 10:12:00–10:42:00 on a spot A10G = 1800 s × 1 GPU
        pod(
            "infer-x-default-x-team-a",
            "vcluster-team-a",
            node_name="g5",
            requests={"nvidia.com/gpu": "1"},
            labels={"vcluster.loft.sh/managed-by": "team-a"},
            started=t("10:12:00"),
            finished=t("10:42:00"),
        ),
    ]


EXPECTED = {
    (TEAM_A, "gpu_hours", "infer-x-default-x-team-a", "gpu_sku=nvidia-a10g-24gb", *SHARED): Decimal("0.5"),
    (TEAM_A, "control_plane_hours", "team-a"): Decimal("1"),
}


def test_collect_kubernetes_command(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    with serve(t("11:05:00"), cluster()) as sim:
        kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig")
        # "now" is the apiserver's Date header: the simulator's virtual 11:05.
        result = CliRunner().invoke(
            app,
            [
                "collect",
                "--kubernetes",
                "--kubeconfig",
                str(kubeconfig),
                "--cluster",
                "gpu-east",
                "--db",
                db,
                "--from",
                t("10:00:00"),
                "--to",
                t("11:00:00"),
            ],
        )
    assert result.exit_code == 0, result.output
    with Ledger.open(db) as ledger:
        assert usage(ledger) == EXPECTED


def test_collect_with_an_unreachable_cluster_fails_with_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "collect",
            "--kubernetes",
            "--kubeconfig",
            str(kubeconfig),
            "--cluster",
            "x",
            "--db",
            str(tmp_path / "l.db"),
            "--from",
            t("10:00:00"),
            "--to",
            t("11:00:00"),
        ],
    )
    # The CLI's main() turns a SourceError into "error: <reason>" and exit status 1.
    assert isinstance(result.exception, SourceError)
    assert str(result.exception).startswith("kubernetes: LIST nodes failed: ")
    assert "\n" not in str(result.exception)


def test_agent_once_with_vbilling_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = str(tmp_path / "ledger.db")
    for variable, value in {
        "SPOT_DISCOUNT_PERCENT": "60",
        "COLLECTION_INTERVAL": "60s",
        "RECONCILE_INTERVAL": "30s",
        "ADAPTER": "lago",
        "BILLING_CURRENCY": "USD",
        "DEFAULT_PLAN_CODE": "vcluster-standard",
    }.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("LAGO_API_KEY", raising=False)
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    caplog.set_level(logging.INFO)
    with serve(t("11:05:00"), cluster()) as sim:
        kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig")
        config = tmp_path / "kubetally.yaml"
        config.write_text("collection:\n  max_backfill: 2h\n")
        result = CliRunner().invoke(
            app,
            [
                "agent",
                "--once",
                "--clock",
                "apiserver",
                "-c",
                str(config),
                "--kubeconfig",
                str(kubeconfig),
                "--cluster",
                "gpu-east",
                "--db",
                db,
            ],
        )
    assert result.exit_code == 0, result.output
    with Ledger.open(db) as ledger:
        # max_backfill 2 h at 11:05 reaches into 09:00–10:00 (control plane 1 h); then 10:00–11:00.
        assert usage(ledger, start=parse_time(t("10:00:00")), end=parse_time(t("11:00:00"))) == EXPECTED
        assert usage(ledger, start=parse_time(t("09:00:00")), end=parse_time(t("10:00:00"))) == {
            (TEAM_A, "control_plane_hours", "team-a"): Decimal("1")
        }
    # Spot is a price dimension (capacity_type=spot above), never a discount on quantity.
    assert "SPOT_DISCOUNT_PERCENT=60 is ignored" in caplog.text
    assert "delivery skipped" in caplog.text


def test_vbilling_environment_maps_intervals_and_rejects_garbage() -> None:
    env = vbilling_environment(
        {"COLLECTION_INTERVAL": "2m", "RECONCILE_INTERVAL": "45s", "PROMETHEUS_URL": "http://prometheus:9090"},
        KubernetesConfig(),
    )
    assert (env.kubernetes.tick_interval, env.kubernetes.reconcile_interval) == (
        timedelta(minutes=2),
        timedelta(seconds=45),
    )
    assert env.prometheus_url == "http://prometheus:9090"
    with pytest.raises(ValueError, match="COLLECTION_INTERVAL='soon'"):
        vbilling_environment({"COLLECTION_INTERVAL": "soon"}, KubernetesConfig())
    notes = vbilling_environment({"ADAPTER": "metronome"}, KubernetesConfig()).notes
    assert "ADAPTER=metronome" in notes[0]


def test_agent_rejects_a_bad_interval_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTION_INTERVAL", "every minute")
    result = CliRunner().invoke(app, ["agent", "--once", "--cluster", "x", "--db", str(tmp_path / "l.db")])
    assert result.exit_code == 1
    assert "COLLECTION_INTERVAL='every minute'" in result.output


def test_kubernetes_section_is_validated_with_locations(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "kubernetes:\n  window: 5m\n  tenancy:\n    namespace_label: example.com/customer\n"
        "    offboard_grace: 2h\n  dedicated_nodes:\n    vcluster_label: null\n"
    )
    section = load_config([good]).kubernetes
    assert isinstance(section, KubernetesConfig)
    assert (section.window, section.tenancy.offboard_grace, section.dedicated_nodes.vcluster_label) == (
        timedelta(minutes=5),
        timedelta(hours=2),
        None,
    )
    assert str(section.period_kind) == "5m"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kubernetes:\n  window: 7m\n  tenancy:\n    namespace_lable: x\n")
    with pytest.raises(ConfigError) as error:
        load_config([bad])
    problems = "\n".join(error.value.problems)
    assert f"{bad}: kubernetes: window: no period kind is 7m long" in problems
    assert f"{bad}: kubernetes: tenancy.namespace_lable: unknown key" in problems


def test_agent_with_only_vbillings_prometheus_url_collects_what_vbilling_meters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, prometheus
) -> None:  # type: ignore[no-untyped-def]
    """PROMETHEUS_URL from vBilling's environment, no cost-model items, max_backfill of one hour:
    the agent collects GPU utilisation (DCGM) and egress (cAdvisor), as vBilling does, for the
    last closed hour. The Prometheus series are tests/prometheus/prom_scenario.py's (hour
    2026-03-02 10:00–11:00); the simulated cluster's clock is 11:05 that day."""
    db = str(tmp_path / "ledger.db")
    monkeypatch.setenv("PROMETHEUS_URL", prometheus.url)
    monkeypatch.delenv("LAGO_API_KEY", raising=False)
    caplog.set_level(logging.INFO)
    day = "2026-03-02"
    objects = [
        namespace("team-a", {"kubetally.io/tenant": "true"}),
        namespace("team-b", {"kubetally.io/tenant": "true"}),
        node("cpu-system"),
    ]
    with serve(t("11:05:00", day), objects) as sim:
        kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig")
        config = tmp_path / "kubetally.yaml"
        config.write_text("collection:\n  max_backfill: 1h\n  settle_delay: 2m\n")
        args = ["agent", "--once", "--clock", "apiserver", "-c", str(config), "--kubeconfig", str(kubeconfig)]
        result = CliRunner().invoke(app, [*args, "--cluster", "gpu-east", "--db", db])
    assert result.exit_code == 0, result.output
    with Ledger.open(db) as ledger:
        got = {(r.item, r.name, r.tenant): r.usage for r in ledger.records(item=PROM_ITEMS)}
        hours = {r.start for r in ledger.records(item=PROM_ITEMS)}
    assert hours == {parse_time(f"{day}T10:00:00Z")}  # max_backfill 1h still reaches the closed hour
    assert got == {
        # DCGM_FI_PROF_GR_ENGINE_ACTIVE 0.5 for the hour (as in test_prometheus_presets)
        ("GpuUtilization", "GPU-11111111-1111-4111-8111-111111111111", "namespace/team-a"): Decimal("0.5"),
        # GPU_UTIL 75 % for 20 minutes: 0.75 × 1/3
        ("GpuUtilization", "GPU-22222222-2222-4222-8222-222222222222", "namespace/team-b"): Decimal("0.25"),
        # the MIG instance's GR_ENGINE_ACTIVE 0.25 × 1 h
        ("GpuUtilization", "GPU-33333333-3333-4333-8333-333333333333", "namespace/team-a"): Decimal("0.25"),
        # 1024 B/s × 3600 s and 2048 B/s × 1200 s
        ("NetworkEgressBytes", "web-1", "namespace/team-a"): Decimal(3686400),
        ("NetworkEgressBytes", "batch-1", "namespace/team-b"): Decimal(2457600),
    }
    assert "collecting vBilling's Prometheus items GpuUtilization, NetworkEgressBytes" in caplog.text
