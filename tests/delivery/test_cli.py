"""``kubetally deliver``: one-off runs without a config, config files, dead letters, re-queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from kubetally.cli.main import app
from kubetally.ledger.store import Ledger

from .helpers import fleet, ledger_totals, record, sum_by

runner = CliRunner()


def _db(tmp_path: Path, records: list) -> str:
    db = str(tmp_path / "ledger.db")
    with Ledger.open(db) as ledger:
        ledger.write(records)
    return db


def test_one_off_lago_run_as_a_real_process(tmp_path: Path, lago: Any) -> None:
    db = _db(tmp_path, fleet(2, 3))
    env = {**os.environ, "LAGO_API_KEY": lago.api_key, "COLUMNS": "200"}
    url = lago.base_url.removesuffix("/api/v1")  # vBilling style: the host, /api/v1 is added
    done = subprocess.run(
        ["kubetally", "deliver", "--db", db, "--to", "lago", "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "lago" in done.stdout and " 12 " in done.stdout
    assert lago.api_key not in done.stdout + done.stderr
    with Ledger.open(db) as ledger:
        got = sum_by(
            lago.events.values(),
            lambda e: (e["external_subscription_id"][3:], e["code"]),
            lambda e: e["properties"]["quantity"],
        )
        assert got == ledger_totals(ledger)
    assert lago.violations == []


def test_file_dead_letters_and_requeue(tmp_path: Path, lago: Any) -> None:
    recs = fleet(1, 4)
    db = _db(tmp_path, recs)
    bad = recs[5]
    lago.reject_events(lambda e: e["transaction_id"] == f"{bad.id}-0")
    env = {"LAGO_API_KEY": lago.api_key}
    first = runner.invoke(app, ["deliver", "--db", db, "--to", "lago", "--url", lago.base_url], env=env)
    assert first.exit_code == 1, first.output  # a dead letter in the run fails the run (issue 16)
    assert "1 × lago: HTTP 422" in first.output
    listed = runner.invoke(app, ["deliver", "--db", db, "--dead-letters", "--json"])
    [letter] = [json.loads(line) for line in listed.output.splitlines()]
    assert (letter["destination"], letter["event_id"], letter["tenant"], letter["item"], letter["state"]) == (
        "lago",
        f"{bad.id}-0",
        bad.tenant,
        bad.item,
        "dead",
    )
    assert letter["quantity"] == float(bad.usage)
    lago.reject_events(None)
    again = runner.invoke(
        app, ["deliver", "--db", db, "--to", "lago", "--url", lago.base_url, "--requeue", "all"], env=env
    )
    assert again.exit_code == 0, again.output
    assert "re-queued 1 dead letter" in again.output
    assert runner.invoke(app, ["deliver", "--db", db, "--dead-letters"]).output.strip() == "no dead letters"
    assert len(lago.events) == 8


def test_config_file_with_two_destinations(tmp_path: Path, lago: Any) -> None:
    db = _db(tmp_path, fleet(1, 2))
    config = tmp_path / "kubetally.yaml"
    config.write_text(
        f"db: {db}\n"
        "destinations:\n"
        f"  - type: lago\n    url: {lago.base_url}\n    api_key_file: {tmp_path / 'key'}\n"
        f"  - name: audit\n    type: file\n    path: {tmp_path / 'audit.jsonl'}\n"
    )
    (tmp_path / "key").write_text(lago.api_key)
    done = runner.invoke(app, ["deliver", "-c", str(config)], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert len(lago.events) == 4
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 4
    status = runner.invoke(app, ["deliver", "-c", str(config), "--status"])
    assert "audit: cursor 4, delivered 4, already there 0, dead 0, pending 0" in status.output
    only = runner.invoke(app, ["deliver", "-c", str(config), "-d", "nope"])
    assert only.exit_code == 1


def test_a_backend_refusing_every_event_fails_the_run_and_status_json_says_so(tmp_path: Path, lago: Any) -> None:
    recs = fleet(3, 3)  # 3 tenants x 3 hours x 2 items = 18 records, one Lago event each
    db = _db(tmp_path, recs)
    events = len(recs)
    assert events == 18
    lago.reject_events(lambda e: True)
    env = {"LAGO_API_KEY": lago.api_key, "COLUMNS": "200"}
    pending = runner.invoke(app, ["deliver", "--db", db, "--to", "lago", "--status", "--format", "json"], env=env)
    assert pending.exit_code == 0, pending.output
    [row] = json.loads(pending.output)["destinations"]
    assert (row["destination"], row["pending"], row["dead_letters"], row["delivered"]) == ("lago", events, 0, 0)
    assert row["lag_seconds"] is not None and row["lag_seconds"] >= 0 and row["oldest_pending"].endswith("Z")
    run = runner.invoke(app, ["deliver", "--db", db, "--to", "lago", "--url", lago.base_url], env=env)
    assert run.exit_code == 1, run.output
    assert f"dead letters: {events}" in run.output and " ok" not in run.output
    after = runner.invoke(app, ["deliver", "--db", db, "--to", "lago", "--status", "--format", "json"], env=env)
    [row] = json.loads(after.output)["destinations"]
    assert (row["pending"], row["dead_letters"], row["delivered"], row["lag_seconds"]) == (0, events, 0, None)
    # A second run with nothing new dead-letters nothing: it is green again (the dead letters stay listed).
    again = runner.invoke(app, ["deliver", "--db", db, "--to", "lago", "--url", lago.base_url], env=env)
    assert again.exit_code == 0, again.output


def test_failures_exit_non_zero_with_a_reason(tmp_path: Path, lago: Any) -> None:
    db = _db(tmp_path, [record("acme", "gpu_hours", 0, "1")])
    wrong = runner.invoke(
        app,
        ["deliver", "--db", db, "--to", "lago", "--url", lago.base_url],
        env={"LAGO_API_KEY": "not-the-key", "COLUMNS": "200"},
    )
    assert wrong.exit_code == 1
    assert "HTTP 401" in wrong.output and "not-the-key" not in wrong.output
    missing = subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", "deliver", "--db", db, "--to", "stripe"],
        env={k: v for k, v in os.environ.items() if k != "STRIPE_API_KEY"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "destination stripe: no API key (set the environment variable STRIPE_API_KEY)" in missing.stderr
    nothing = runner.invoke(app, ["deliver", "--db", db], env={"LAGO_API_KEY": ""})
    assert nothing.exit_code == 1


def test_follow_delivers_new_records_until_sigterm(tmp_path: Path) -> None:
    import signal
    import time

    db = _db(tmp_path, fleet(1, 2))
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubetally.cli.main",
            "deliver",
            "--db",
            db,
            "--to",
            "file",
            "--path",
            str(out),
            "--follow",
            "--interval",
            "1s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def lines() -> int:
        return len(out.read_text().splitlines()) if out.exists() else 0

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 30
        while lines() < count and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert lines() == count, proc.stderr.read().decode() if proc.poll() is not None else f"{lines()} lines"

    try:
        wait_for(4)
        with Ledger.open(db) as ledger:
            ledger.write([record("late", "gpu_hours", 5, "1.5")])
        wait_for(5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read().decode()
