"""Hostile input, table-driven: every bad value an operator (or an attacker controlling a name or
a PromQL answer) can hand kubetally ends in one line naming the file/item/field or option, a
non-zero exit, no traceback, and a ledger exactly as it was.

The ledger is one real collect of the seed from the real Prometheus (7 records, watermarks at
2026-03-02T11:00:00Z); every case runs the real entry point in a child process against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubetally.ledger.store import Ledger

SRC = Path(__file__).parents[2] / "src"
SEEDS = Path(__file__).parents[1] / "data" / "seeds"
COLLECTION = SEEDS / "alauda-collection-configmap.yaml"
DISPLAY = SEEDS / "alauda-display-configmap.yaml"
PRICES = Path(__file__).parents[2] / "src" / "kubetally" / "rating" / "example-prices.yaml"
RANGE = ["--from", "2026-03-02T10:00:00Z", "--to", "2026-03-02T11:00:00Z"]


def kt(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200", **(env or {})}
    for key in ("KUBETALLY_DB", "KUBETALLY_CONFIG", "KUBETALLY_CLUSTER", "PROMETHEUS_URL", "LAGO_API_KEY"):
        if key not in (env or {}):
            environment.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(db: Path) -> tuple[Any, ...]:
    with Ledger.open(str(db), migrate=False) as ledger:
        records = sorted((r.id, r.revision, str(r.usage)) for r in ledger.records(history=True))
        marks = sorted((w.source, w.cluster, w.item, w.until) for w in ledger.watermarks())
    return records, marks


def item_config(query: str, *, extra: str = "") -> str:
    return (
        "items:\n"
        "  - kind: Vgpu\n    category: Hostile\n    item: HostileItem\n"
        f"    usage:\n      query: '{query}'\n      step: 5m\n"
        "      mappers: {name: deviceuuid, namespace: podnamespace}\n" + extra
    )


def vector(value: str) -> str:
    """One series named gpu-x in namespace team-a whose every point is ``value``."""
    inner = f'label_replace(vector({value}), "deviceuuid", "gpu-x", "", "")'
    return f'label_replace({inner}, "podnamespace", "team-a", "", "")'


#: name → (files to write, argv (with {db}, {prom}, {dir} placeholders), substring of the one line)
FILES: dict[str, str] = {
    "step-half-second.yaml": COLLECTION.read_text().replace("step: 5m", "step: 0.5s", 1),
    "step-huge.yaml": COLLECTION.read_text().replace("step: 5m", "step: 99999999999999999999d", 1),
    "divisor-abc.yaml": DISPLAY.read_text().replace("divisor: 1000", "divisor: abc", 1),
    "divisor-nan.yaml": DISPLAY.read_text().replace("divisor: 1000", "divisor: .nan", 1),
    "divisor-list.yaml": DISPLAY.read_text().replace("divisor: 1000", "divisor: []", 1),
    "divisor-bool.yaml": DISPLAY.read_text().replace("divisor: 1000", "divisor: true", 1),
    "divisor-huge.yaml": DISPLAY.read_text().replace("divisor: 1000", "divisor: 1e400", 1),
    "prices-bad-date.yaml": PRICES.read_text().replace("currency: USD", "currency: USD\neffective: 2026-13-01", 1),
    "prices-huge.yaml": PRICES.read_text().replace('price: "4.29"', "price: 1e400", 1),
    "prices-nan.yaml": PRICES.read_text().replace('price: "4.29"', "price: .nan", 1),
    "prices-negative.yaml": PRICES.read_text().replace('price: "4.29"', "price: -1", 1),
    "prices-word.yaml": PRICES.read_text().replace('price: "4.29"', "price: cheap", 1),
    "zone-mars.yaml": "billing:\n  timezone: Mars/Olympus\n",
    "budget-negative.yaml": 'budgets:\n  items:\n    - name: a\n      tenant: team-a\n      amount: "-5"\n',
    "budget-word.yaml": (
        'budgets:\n  items:\n    - name: a\n      tenant: team-a\n      amount: "100"\n      thresholds: [50, abc]\n'
    ),
    "budget-no-limit.yaml": "budgets:\n  items:\n    - name: a\n      tenant: team-a\n",
    "broken.yaml": "a: [\nb: {\n",
    "tabs.yaml": "items:\n\t- kind: x\n",
    "huge-value.yaml": item_config(vector("1e27")),
    "float-max.yaml": item_config(vector("1.7e308")),  # near float max; 12 steps sum beyond any ledger
    "negative.yaml": item_config(vector("-5")),
    "tiny.yaml": item_config(vector("1e-40")),
    "long-namespace.yaml": item_config(
        'label_replace(label_replace(vector(1), "deviceuuid", "gpu-x", "", ""), '
        f'"podnamespace", "{"n" * 20000}", "", "")'
    ),
}

CASES: list[tuple[str, list[str], str]] = [
    # validate
    ("validate step 0.5s", ["validate", "step-half-second.yaml"], "usage.step: not a duration: '0.5s'"),
    ("validate step huge", ["validate", "step-huge.yaml"], "usage.step: duration too long"),
    ("validate divisor abc", ["validate", "divisor-abc.yaml"], "methods[0].divisor: not a number: 'abc'"),
    ("validate divisor nan", ["validate", "divisor-nan.yaml"], "methods[0].divisor: NaN is not a finite number"),
    ("validate divisor []", ["validate", "divisor-list.yaml"], "methods[0].divisor: not a number: []"),
    ("validate divisor true", ["validate", "divisor-bool.yaml"], "methods[0].divisor: not a number: True"),
    ("validate divisor 1e400", ["validate", "divisor-huge.yaml"], "methods[0].divisor: 1E+400 is too large"),
    ("validate broken yaml", ["validate", "broken.yaml"], "broken.yaml: not valid YAML: line 3 column 1"),
    ("validate tabs", ["validate", "tabs.yaml"], "tabs.yaml: not valid YAML: line 2 column 1"),
    ("validate missing", ["validate", "missing.yaml"], "missing.yaml: cannot read: No such file or directory"),
    ("validate time zone", ["validate", "zone-mars.yaml"], "billing.timezone: unknown time zone 'Mars/Olympus'"),
    (
        "validate budget negative",
        ["validate", "budget-negative.yaml"],
        "budgets: items[0].amount: the limit must be a positive number, not '-5'",
    ),
    ("validate budget threshold", ["validate", "budget-word.yaml"], "thresholds: a threshold is not a number: 'abc'"),
    (
        "validate budget no limit",
        ["validate", "budget-no-limit.yaml"],
        "items[0]: give exactly one of amount (money) or quantity (with item)",
    ),
    # collect
    (
        "collect bad url",
        ["collect", "-c", "{seed}", "--prometheus", "http://[::1", "--cluster", "c", *RANGE],
        "Prometheus URL http://[::1: not a valid URL",
    ),
    (
        "collect no scheme",
        ["collect", "-c", "{seed}", "--prometheus", "prometheus:9090", "--cluster", "c"],
        "Prometheus URL prometheus:9090: expected http(s)://HOST",
    ),
    (
        "collect step 0.5s",
        ["collect", "-c", "step-half-second.yaml", "--prometheus", "{prom}", "--cluster", "c"],
        "usage.step: not a duration: '0.5s'",
    ),
    (
        "collect step huge",
        ["collect", "-c", "step-huge.yaml", "--prometheus", "{prom}", "--cluster", "c"],
        "duration too long",
    ),
    (
        "collect 1e27",
        ["collect", "-c", "huge-value.yaml", "--prometheus", "{prom}", "--cluster", "gpu-east", *RANGE],
        "item 'HostileItem' name 'gpu-x' in namespace 'team-a' for [2026-03-02T10:00:00Z, 2026-03-02T11:00:00Z): usage "
        "12000000000000000000000000000 is too large to be stored exactly",
    ),
    (
        "collect 1.8e308",
        ["collect", "-c", "float-max.yaml", "--prometheus", "{prom}", "--cluster", "gpu-east", *RANGE],
        "item 'HostileItem' name 'gpu-x' in namespace 'team-a'",
    ),
    (
        "collect 1e-40",
        ["collect", "-c", "tiny.yaml", "--prometheus", "{prom}", "--cluster", "gpu-east", *RANGE],
        "has more than 30 decimal places",
    ),
    # -5 at each of the 12 five-minute steps: usage -60, refused (allow_negative is false)
    (
        "collect negative gauge",
        ["collect", "-c", "negative.yaml", "--prometheus", "{prom}", "--cluster", "gpu-east", *RANGE],
        "usage is negative (-60)",
    ),
    (
        "collect from 9999",
        ["collect", "-c", "{seed}", "--prometheus", "{prom}", "--cluster", "c", "--from", "9999-12-01"],
        "--from: out of range: '9999-12-01'",
    ),
    (
        "collect mysql",
        ["collect", "-c", "{seed}", "--prometheus", "{prom}", "--cluster", "c", "--db", "mysql://x/y", *RANGE],
        "not a usable ledger URL",
    ),
    (
        "collect pg garbage port",
        [
            "collect",
            "-c",
            "{seed}",
            "--prometheus",
            "{prom}",
            "--cluster",
            "c",
            "--db",
            "postgresql://u:pw@h:abc/db",
            *RANGE,
        ],
        "not a usable ledger URL",
    ),
    # report
    ("report from 9999", ["report", "--prices", "example", "--from", "9999-12-01"], "--from: out of range"),
    ("report from year 1", ["report", "--prices", "example", "--from", "0001-01-01"], "--from: out of range"),
    ("report garbage time", ["report", "--prices", "example", "--to", "tomorrow"], "--to: not a time: 'tomorrow'"),
    (
        "report missing folder",
        ["report", "--prices", "example", "-o", "nofolder/x.csv", "--format", "csv"],
        "--output nofolder/x.csv: folder nofolder does not exist",
    ),
    ("report folder as file", ["report", "--prices", "example", "-o", ".", "--format", "csv"], "is a folder"),
    ("report bad format", ["report", "--prices", "example", "--format", "xml"], "--format must be table, csv or json"),
    (
        "report bad date in prices",
        ["report", "--prices", "prices-bad-date.yaml"],
        "prices-bad-date.yaml: not valid YAML: line 12 column 12: not a valid date/time '2026-13-01'",
    ),
    ("report price 1e400", ["report", "--prices", "prices-huge.yaml"], "price: 1E+400 is too large"),
    ("report price nan", ["report", "--prices", "prices-nan.yaml"], "price: not a finite number"),
    ("report price negative", ["report", "--prices", "prices-negative.yaml"], "a price must not be negative"),
    ("report price word", ["report", "--prices", "prices-word.yaml"], "not a number: 'cheap'"),
    ("report divisor abc", ["report", "--prices", "example", "-c", "divisor-abc.yaml"], "divisor: not a number"),
    ("report typo db", ["report", "--prices", "example", "--db", "ledgr.db"], "ledgr.db does not exist"),
    ("report mysql", ["report", "--prices", "example", "--db", "mysql://a/b"], "not a usable ledger URL"),
    ("report ipv6 garbage", ["report", "--prices", "example", "--db", "postgresql://u@[::1/db"], "not a usable"),
    (
        "report time zone",
        ["report", "--prices", "example", "-c", "zone-mars.yaml"],
        "zone-mars.yaml: billing.timezone: unknown time zone 'Mars/Olympus'",
    ),
    # budgets
    ("budgets negative", ["budgets", "-c", "budget-negative.yaml"], "the limit must be a positive number, not '-5'"),
    ("budgets no limit", ["budgets", "-c", "budget-no-limit.yaml"], "give exactly one of amount"),
    # prune
    ("prune bad date", ["prune", "--before", "2026-13-01"], "--before: not a time: '2026-13-01'"),
    ("prune word", ["prune", "--before", "yesterday"], "--before: not a time: 'yesterday'"),
    ("prune typo db", ["prune", "--before", "2026-11-01", "--db", "ledgr.db"], "ledgr.db does not exist"),
    # export
    (
        "export missing folder",
        ["export", "focus", "--prices", "example", "-o", "nofolder/x.csv"],
        "--output nofolder/x.csv: folder nofolder does not exist",
    ),
    ("export from 9999", ["export", "focus", "--prices", "example", "--from", "9999-12-01"], "out of range"),
    ("export bad format", ["export", "focus", "--prices", "example", "--format", "xml"], "--format must be"),
    ("export price 1e400", ["export", "focus", "--prices", "prices-huge.yaml"], "too large"),
    ("export typo db", ["export", "focus", "--prices", "example", "--db", "ledgr.db"], "ledgr.db does not exist"),
    # deliver
    ("deliver unknown type", ["deliver", "--to", "nope"], "--to: unknown destination 'nope'"),
    ("deliver bad max-wait", ["deliver", "--to", "file", "--path", "x.jsonl", "--max-wait", "abc"], "not a duration"),
    ("deliver missing folder", ["deliver", "--to", "file", "--path", "nofolder/x.jsonl"], "directory nofolder"),
    ("deliver no key", ["deliver", "--to", "lago", "--url", "http://[::1"], "no API key"),
    ("deliver status format", ["deliver", "--status", "--format", "xml"], "--format must be text or json"),
    ("deliver typo db", ["deliver", "--to", "file", "--path", "x.jsonl", "--db", "ledgr.db"], "does not exist"),
]


@pytest.fixture(scope="module")
def workspace(prometheus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("hostile")
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    db = folder / "kubetally.db"
    done = kt(
        "collect", "-c", str(COLLECTION), "--prometheus", prometheus.url, "--cluster", "gpu-east", *RANGE, cwd=folder
    )
    assert done.returncode == 0, done.stderr
    return {"dir": folder, "db": db, "prom": prometheus.url, "before": snapshot(db)}


@pytest.mark.parametrize(("argv", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_non_zero_and_the_ledger_is_untouched(
    workspace: dict[str, Any], argv: list[str], needle: str
) -> None:
    folder: Path = workspace["dir"]
    files_before = sorted(p.name for p in folder.iterdir())
    args = [a.format(prom=workspace["prom"], seed=COLLECTION) for a in argv]
    done = kt(*args, cwd=folder)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("warning")]
    if args[0] == "validate":
        # validate lists every problem, one line each, then the count
        [problem] = [ln for ln in lines if ln.startswith("✗")]
        assert lines[-1] == "1 problem(s) found"
    else:
        [problem] = lines
        assert problem.startswith("error: ")
    assert needle in problem, problem
    assert snapshot(workspace["db"]) == workspace["before"]
    assert sorted(p.name for p in folder.iterdir()) == files_before  # nothing created (no typo'd ledger)
