"""``kubetally collect`` when Prometheus fails: stdout shows only what was written before the
failure (nothing at all when nothing was), stderr the one-line reason — and a password in the
``--prometheus`` URL is never printed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prom_helpers import RANGE, SEED_FILES, kubetally

from kubetally.ledger.store import Ledger
from kubetally.testing.net import free_port

CORE_QUERY = "sum by (deviceuuid, podnamespace) (rate(vgpu_core_usage_seconds_total{}[5m]))"
H10 = "[2026-03-02T10:00:00Z, 2026-03-02T11:00:00Z)"


def with_password(url: str) -> str:
    return url.replace("http://", "http://admin:s3cret@", 1)


def test_unreachable_prometheus_prints_only_the_error(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    port = free_port()
    done = kubetally(
        "collect",
        "-c",
        SEED_FILES[0],
        "-c",
        SEED_FILES[1],
        "--prometheus",
        f"http://admin:s3cret@127.0.0.1:{port}",
        "--cluster",
        "gpu-east",
        "--db",
        db,
        *RANGE,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # not "no closed period to collect": there were periods, they failed
    assert done.stderr == (
        f"error: Prometheus http://admin:***@127.0.0.1:{port}: item 'VgpuCoreUsed' usage.query for {H10}: "
        f"unreachable (ConnectError: [Errno 111] Connection refused) (query: {CORE_QUERY}) — nothing was written "
        f"for item 'VgpuCoreUsed' period {H10}; the next run resumes from 2026-03-02T10:00:00Z\n"
    )
    with Ledger.open(str(db)) as ledger:
        assert list(ledger.records(history=True)) == []


def test_a_failure_midway_prints_what_was_written_and_the_error(
    prometheus,
    tmp_path: Path,
    write_config: Callable[..., Path],  # type: ignore[no-untyped-def]
) -> None:
    broken = write_config(
        SEED_FILES[0]
        .read_text()
        .replace("avg_over_time(vgpu_memory_usage_bytes{}[5m])", "avg_over_time(vgpu_memory_usage_bytes{}[5m]"),
        "bad.yaml",
    )
    db = tmp_path / "ledger.db"
    url = with_password(prometheus.url)
    done = kubetally(
        "collect", "-c", broken, "-c", SEED_FILES[1], "--prometheus", url, "--cluster", "gpu-east", "--db", db, *RANGE
    )
    assert done.returncode == 1
    # VgpuCoreUsed H10 was written before VgpuMemoryUsed H10 failed; VgpuMemoryUsed wrote nothing.
    # Data on stdout; the warning (a diagnostic) on stderr, before the error (issue 16).
    assert done.stdout == (
        "Prometheus collection                                             \n"
        "item         periods records new revised same collected until     \n"
        "──────────────────────────────────────────────────────────────────\n"
        "VgpuCoreUsed       1       4   4       0    0 2026-03-02T11:00:00Z\n"
    )
    warning, error = done.stderr.splitlines()
    assert warning == (
        "warning: item 'VgpuCoreUsed': labels.query: several label sets for "
        f"('GPU-2eec4202-80dc-870f-3ca5-25879d96eca7', 'yulin-2') in {H10}; kept the one present longest"
    )
    shown = prometheus.url.replace("http://", "http://admin:***@", 1)
    assert error.startswith(
        f"error: Prometheus {shown}: item 'VgpuMemoryUsed' usage.query for {H10}: HTTP 400 bad_data: "
    )
    # (the parse error's wording is the Prometheus version's own)
    assert done.stderr.endswith(
        " (query: sum by (deviceuuid, podnamespace) (avg_over_time(vgpu_memory_usage_bytes{}[5m])) — nothing was "
        f"written for item 'VgpuMemoryUsed' period {H10}; the next run resumes from 2026-03-02T10:00:00Z\n"
    )
    assert "s3cret" not in done.stdout + done.stderr
