"""Ledgers are opened, not conjured: only collect/agent/server/``kubetally migrate`` create or
upgrade one; report, records, export and deliver refuse a missing ledger and a schema they do not
understand, with one line naming the fix, and change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from kubetally.ledger.migrate import alembic_config
from kubetally.ledger.store import Ledger, LedgerError, database_url

READERS = [
    ["report", "--prices", "example"],
    ["records"],
    ["export", "focus", "--prices", "example"],
    ["deliver", "--status"],
    ["deliver", "--dead-letters"],
    ["deliver", "--to", "file", "--path", "out.jsonl"],
]


def kt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "COLUMNS": "200"}
    env.pop("KUBETALLY_DB", None)
    env.pop("KUBETALLY_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("command_", READERS, ids=lambda c: " ".join(c[:2]))
def test_typo_ledger_path_is_refused_and_nothing_is_created(tmp_path: Path, command_: list[str]) -> None:
    done = kt(*command_, "--db", "nope.db", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert "nope.db does not exist" in line and "kubetally migrate --db nope.db" in line
    assert "Traceback" not in done.stderr and "Total" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_default_ledger_is_not_created_by_a_report(tmp_path: Path) -> None:
    done = kt("report", "--prices", "example", cwd=tmp_path)
    assert done.returncode == 1
    assert "kubetally.db does not exist" in done.stderr
    assert not (tmp_path / "kubetally.db").exists()


def test_migrate_creates_and_then_readers_open(tmp_path: Path) -> None:
    assert kt("migrate", "--check", "--db", "x.db", cwd=tmp_path).returncode == 1
    assert not (tmp_path / "x.db").exists()
    made = kt("migrate", "--db", "x.db", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    # the heads of each branch of migrations (0009_rollup_days follows 0007_billing_zone, which
    # follows 0004_rating; 0008 follows 0002_kubernetes; other parts add their own heads)
    heads = made.stdout.removeprefix("ledger schema at ").strip().split(", ")
    assert {
        "0003_outbox",
        "0005_server",
        "0006_sessions",
        "0009_rollup_days",
        "0008_tenant_customer",
        "0009_report_buckets",
    } <= set(heads)
    assert kt("migrate", "--check", "--db", "x.db", cwd=tmp_path).returncode == 0
    report = kt("report", "--prices", "example", "--db", "x.db", "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr


def _old_ledger(url: str) -> None:
    """A ledger as the first kubetally left it: only the core revision."""
    engine = create_engine(database_url(url))
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001_core")
    engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(database_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_older_schema_is_refused_by_readers_and_upgraded_by_migrate(ledger_url: str) -> None:
    _old_ledger(ledger_url)
    before = _tables(ledger_url)
    assert "outbox_cursors" not in before
    with pytest.raises(LedgerError, match=r"older schema than this kubetally; run `kubetally migrate --db .*` first"):
        Ledger.open(ledger_url, migrate=False)
    assert _tables(ledger_url) == before  # refused, not upgraded
    with Ledger.open(ledger_url, migrate=True):
        pass
    assert {"outbox_cursors", "dead_letters"} <= _tables(ledger_url)
    Ledger.open(ledger_url, migrate=False).close()


def test_newer_schema_is_refused_by_everyone(ledger_url: str) -> None:
    with Ledger.open(ledger_url):
        pass
    engine = create_engine(database_url(ledger_url))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0099_future')"))
    engine.dispose()
    for migrate in (False, True):
        with pytest.raises(LedgerError, match="0099_future is newer than this kubetally understands"):
            Ledger.open(ledger_url, migrate=migrate)


def test_an_empty_database_is_not_a_ledger(ledger_url: str) -> None:
    if "://" not in ledger_url:
        Path(ledger_url).touch()  # an empty SQLite file (e.g. `touch`ed by mistake)
    with pytest.raises(LedgerError, match=r"is not a kubetally ledger \(no schema\); run `kubetally migrate"):
        Ledger.open(ledger_url, migrate=False)
    assert "records" not in _tables(ledger_url)


@pytest.mark.parametrize(
    ("db", "needle"),
    [
        ("mysql://a/b", "not a usable ledger URL"),
        ("postgresql://u:secret@h:abc/db", "not a usable ledger URL"),
        ("postgresql://u@[::1/db", "not a usable ledger URL"),
        ("nowhere/ledger.db", "directory nowhere does not exist"),
    ],
)
def test_unusable_db_values_are_one_line(tmp_path: Path, db: str, needle: str) -> None:
    done = kt("records", "--db", db, cwd=tmp_path)
    assert done.returncode == 1
    assert needle in done.stderr and "Traceback" not in done.stderr and "secret" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
