"""Prometheus behind its own basic auth and behind TLS with a private CA (and client
certificates), exactly as ``--web.config.file`` serves them: real servers, real collects.

The CA, server and client certificates are made here with ``cryptography``; the basic-auth
password hash with ``bcrypt``. Expected quantities are the seed's (test_prometheus_cli.py): the
VgpuCoreUsed record of yulin-2 in H10 is 12 five-minute rate points of 0.5 = 6, and the hour
holds 7 records (4 VgpuCoreUsed + 3 VgpuMemoryUsed).
"""

from __future__ import annotations

import base64
import http.server
import importlib.util
import ipaddress
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prom_helpers import RANGE, SEED_FILES

from kubetally.ledger.store import Ledger
from kubetally.testing.prometheus import PrometheusServer

SRC = Path(__file__).parents[2] / "src"
PASSWORD = "s3cret-Pa55"


def _openmetrics() -> str:
    path = Path(__file__).resolve().parent / "prom_scenario.py"
    spec = importlib.util.spec_from_file_location("kubetally_prom_scenario_secure", path)
    assert spec is not None and spec.loader is not None
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)
    return scenario.openmetrics()


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("kubetally test CA", ca_key, None, ca_key, ca=True)
    server_key, client_key = _key(), _key()
    return {
        "ca": _pem(ca, folder / "ca.pem"),
        "server": _pem(_cert("prometheus", server_key, ca, ca_key, server=True), folder / "server.pem"),
        "server_key": _write_key(server_key, folder / "server.key"),
        "client": _pem(_cert("kubetally", client_key, ca, ca_key), folder / "client.pem"),
        "client_key": _write_key(client_key, folder / "client.key"),
    }


@pytest.fixture(scope="module")
def basic_auth_prometheus() -> Iterator[PrometheusServer]:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    server = PrometheusServer.start(
        _openmetrics(),
        web_config=f'basic_auth_users:\n  kubetally: "{hashed}"\n',
        probe={"auth": ("kubetally", PASSWORD)},
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_prometheus(pki: dict[str, Path]) -> Iterator[PrometheusServer]:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
    server = PrometheusServer.start(
        _openmetrics(),
        web_config=(
            "tls_server_config:\n"
            f"  cert_file: {pki['server']}\n  key_file: {pki['server_key']}\n"
            f"  client_ca_file: {pki['ca']}\n  client_auth_type: RequireAndVerifyClientCert\n"
        ),
        probe={"verify": context},
    )
    yield server
    server.stop()


def collect(
    tmp_path: Path, prometheus_section: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "kubetally.yaml"
    config.write_text(f"cluster: gpu-east\ndb: {tmp_path / 'ledger.db'}\nprometheus:\n{prometheus_section}")
    environment = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200", **(env or {})}
    if "PROMETHEUS_PASSWORD" not in (env or {}):
        environment.pop("PROMETHEUS_PASSWORD", None)
    args = ["collect", "-c", str(config), *[a for f in SEED_FILES for a in ("-c", str(f))], *RANGE]
    return subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def usage_of_yulin_2(db: Path) -> tuple[int, Decimal]:
    with Ledger.open(str(db), migrate=False) as ledger:
        records = list(ledger.records())
    [core] = [r for r in records if r.item == "VgpuCoreUsed" and r.namespace == "yulin-2"]
    return len(records), core.usage


def test_basic_auth_password_from_the_environment(basic_auth_prometheus: PrometheusServer, tmp_path: Path) -> None:
    section = f"  url: {basic_auth_prometheus.url}\n  username: kubetally\n"
    done = collect(tmp_path, section, env={"PROMETHEUS_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert usage_of_yulin_2(tmp_path / "ledger.db") == (7, Decimal(6))


def test_basic_auth_password_from_a_file_and_a_wrong_one(
    basic_auth_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    section = f"  url: {basic_auth_prometheus.url}\n  username: kubetally\n  password_file: {tmp_path / 'password'}\n"
    done = collect(tmp_path, section)
    assert done.returncode == 0, done.stderr
    assert usage_of_yulin_2(tmp_path / "ledger.db") == (7, Decimal(6))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "password").write_text("not-it")
    refused = collect(wrong, section.replace(str(tmp_path / "password"), str(wrong / "password")))
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert "HTTP 401" in line and "not-it" not in line
    missing = collect(wrong, f"  url: {basic_auth_prometheus.url}\n  username: kubetally\n")
    assert missing.returncode == 1
    assert "prometheus.username is set but there is no password" in missing.stderr


def test_tls_with_a_private_ca_and_a_client_certificate(
    tls_prometheus: PrometheusServer, pki: dict[str, Path], tmp_path: Path
) -> None:
    assert tls_prometheus.url.startswith("https://")
    section = (
        f"  url: {tls_prometheus.url}\n  ca_file: {pki['ca']}\n"
        f"  cert_file: {pki['client']}\n  key_file: {pki['client_key']}\n"
        "  headers: {X-Scope-OrgID: tenant-1}\n"
    )
    done = collect(tmp_path, section)
    assert done.returncode == 0, done.stderr
    assert usage_of_yulin_2(tmp_path / "ledger.db") == (7, Decimal(6))
    # Without the private CA the server's certificate is not trusted: one line, nothing written.
    other = tmp_path / "no-ca"
    other.mkdir()
    untrusted = collect(other, f"  url: {tls_prometheus.url}\n")
    assert untrusted.returncode == 1
    [line] = untrusted.stderr.strip().splitlines()
    assert "CERTIFICATE_VERIFY_FAILED" in line
    with Ledger.open(str(other / "ledger.db"), migrate=False) as ledger:
        assert list(ledger.records()) == []


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A reverse proxy that notes each request's path and headers, then forwards it."""

    upstream: ClassVar[str] = ""
    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        reply = httpx.request(self.command, self.upstream + self.path, headers=headers, content=body, timeout=30)
        self.send_response(reply.status_code)
        for key, value in reply.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    do_GET = do_POST = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_extra_headers_reach_the_server(basic_auth_prometheus: PrometheusServer, tmp_path: Path) -> None:
    """``X-Scope-OrgID`` (the Mimir/Cortex/Thanos tenant) and basic auth arrive on every request:
    a recording proxy in front of the real Prometheus sees them, and the collect is complete."""
    _Recorder.upstream, _Recorder.seen = basic_auth_prometheus.url.rstrip("/"), []
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        section = (
            f"  url: http://127.0.0.1:{proxy.server_address[1]}\n  username: kubetally\n"
            "  headers: {X-Scope-OrgID: tenant-1}\n"
        )
        done = collect(tmp_path, section, env={"PROMETHEUS_PASSWORD": PASSWORD})
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert done.returncode == 0, done.stderr
    assert usage_of_yulin_2(tmp_path / "ledger.db") == (7, Decimal(6))
    queries = [(path, headers) for path, headers in _Recorder.seen if path.startswith("/api/v1/")]
    assert queries, _Recorder.seen
    expected_auth = "Basic " + base64.b64encode(f"kubetally:{PASSWORD}".encode()).decode()
    assert {headers.get("x-scope-orgid") for _, headers in queries} == {"tenant-1"}
    assert {headers.get("authorization") for _, headers in queries} == {expected_auth}
