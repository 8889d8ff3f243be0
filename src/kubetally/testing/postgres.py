"""A throwaway PostgreSQL server on a loopback port (Debian's ``postgresql`` package)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kubetally.testing import MissingPart
from kubetally.testing.net import free_port, wait_for_port


def _bindir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise MissingPart("postgresql", "apt-get install postgresql")


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI runs as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass
class PostgresServer:
    port: int
    datadir: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres_server(datadir: Path | None = None) -> Iterator[PostgresServer]:
    """A server on a fresh data directory, removed afterwards; or on ``datadir``, created
    there if it holds no cluster yet and kept (a benchmark reuses a loaded ledger)."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="kubetally-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    keep = datadir is not None
    if datadir is None:
        datadir = root / "data"
    if not (datadir / "PG_VERSION").exists():
        datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(datadir, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
    port = free_port()
    process = subprocess.Popen(
        _as_postgres(
            [
                str(bindir / "postgres"),
                "-D",
                str(datadir),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={root}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        yield PostgresServer(port=port, datadir=datadir, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)
        if not keep:
            shutil.rmtree(datadir, ignore_errors=True)
