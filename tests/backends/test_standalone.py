"""``python -m kubetally.testing.backends`` serves one fake for benchmarks and manual runs."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from kubetally.testing.net import free_port


@pytest.mark.usefixtures("contracts_available")
def test_standalone_lago_prints_base_url_and_serves() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kubetally.testing.backends", "lago", "--port", str(port), "--api-key", "k-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url == f"http://127.0.0.1:{port}/api/v1"
        response = httpx.post(
            f"{base_url}/events",
            headers={"Authorization": "Bearer k-1"},
            json={"event": {"transaction_id": "t-1", "external_subscription_id": "s-1", "code": "storage"}},
        )
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "1 events accepted, 0 contract violations" in err
