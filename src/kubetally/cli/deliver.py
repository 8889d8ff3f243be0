"""``kubetally deliver``: push the outbox to the billing backends, list and re-queue dead letters.

Destinations come from ``--to`` (one-off, no config file), else from the ``destinations:``
section of ``--config``, else from vBilling's ``LAGO_API_KEY``/``LAGO_API_URL`` variables.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kubetally.cli.common import ConfigOption, DbOption, console, fail
from kubetally.delivery.config import (
    DESTINATION_TYPES,
    KEY_VARIABLES,
    DestinationBase,
    DestinationsConfig,
    destinations_from_env,
    one_off_config,
)
from kubetally.delivery.engine import Deliverer, DeliverySummary, build_all, item_specs
from kubetally.delivery.outbox import Outbox, all_destinations
from kubetally.ledger.store import Ledger
from kubetally.periods import format_time, parse_duration
from kubetally.record import dumps_exact


def _destinations(
    config_paths: list[str] | None,
    to: str | None,
    url: str | None,
    path: str | None,
    name: str | None,
    only: list[str] | None,
) -> tuple[list[DestinationBase], Any]:
    config = None
    from kubetally.config import discover_config_files

    config_paths = discover_config_files(config_paths)
    if config_paths:
        from kubetally.config import load_config

        config = load_config(config_paths)
    if to:
        return [one_off_config(to, url=url, path=path, name=name)], config
    if url or path:
        fail("--url/--path need --to TYPE")
    section = config.section("destinations") if config is not None else None
    if isinstance(section, DestinationsConfig):
        chosen = section.enabled()
    else:
        from_env = destinations_from_env()
        chosen = from_env.enabled() if from_env else []
    if only:
        missing = sorted(set(only) - {d.name for d in chosen})
        if missing:
            fail(f"--destination: not configured: {', '.join(missing)}")
        chosen = [d for d in chosen if d.name in only]
    return chosen, config


def _print_summary(summary: DeliverySummary, *, title: str = "delivery") -> None:
    table = Table(title=title, title_justify="left")
    for column in ("destination", "delivered", "existed", "dead", "skipped", "pending", "status"):
        table.add_column(column, justify="left" if column in ("destination", "status") else "right", overflow="fold")
    for d in summary.destinations:
        status = d.status
        if d.offboarded:
            status += f"; offboarded {', '.join(d.offboarded)}"
        label = d.name if d.name == d.kind else f"{d.name} ({d.kind})"
        table.add_row(
            escape(label),
            str(d.delivered),
            str(d.duplicates),
            str(d.dead_lettered),
            str(d.skipped),
            str(d.pending),
            escape(status),
        )
    console.print(table)
    for d in summary.destinations:
        if d.reasons:
            console.print(f"[bold]{d.name}[/]: dead-lettered, by reason:")
            for reason, count in d.reasons.most_common():
                console.print(f"  {count} × {reason}", highlight=False, soft_wrap=True, markup=False)


def _print_dead_letters(ledger: Ledger, names: list[str], as_json: bool) -> int:
    """One line per dead letter (JSON lines with ``--json``): what, for whom, and why."""
    count = 0
    for name in names:
        for row in Outbox(ledger, name).dead_letters():
            count += 1
            if as_json:
                console.print_json(
                    dumps_exact(
                        {
                            "destination": name,
                            "event_id": row.event_id,
                            "record_id": row.record_id,
                            "revision": row.revision,
                            "tenant": row.tenant,
                            "item": row.item,
                            "quantity": row.quantity,
                            "start": format_time(row.timestamp),
                            "status": row.status,
                            "state": row.state,
                            "attempts": row.attempts,
                            "reason": row.reason,
                        }
                    ),
                    indent=None,
                )
                continue
            console.print(
                f"{name} {row.event_id} tenant={row.tenant} item={row.item} quantity={format(row.quantity, 'f')} "
                f"start={format_time(row.timestamp)} [{row.state}] {row.reason}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
    if not count and not as_json:
        console.print("no dead letters")
    return count


def register(app: typer.Typer) -> None:
    @app.command("deliver")
    def deliver(
        db: DbOption = None,
        config: ConfigOption = None,
        to: Annotated[
            str | None,
            typer.Option(
                "--to",
                help=f"One-off destination without a config file, one of: {', '.join(DESTINATION_TYPES)}. Keys from "
                + ", ".join(f"{v} ({k})" for k, v in KEY_VARIABLES.items())
                + ".",
            ),
        ] = None,
        url: Annotated[
            str | None, typer.Option("--url", help="Backend URL for --to (Lago: host, /api/v1 added).")
        ] = None,
        path: Annotated[str | None, typer.Option("--path", help="Output file for --to file (JSON lines).")] = None,
        name: Annotated[str | None, typer.Option("--name", help="Outbox name for --to (default: the type).")] = None,
        only: Annotated[
            list[str] | None, typer.Option("--destination", "-d", help="Only this configured destination (repeatable).")
        ] = None,
        batch: Annotated[int | None, typer.Option("--batch", min=1, help="Events per request (≤ backend max).")] = None,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep delivering new records.")] = False,
        interval: Annotated[str, typer.Option("--interval", help="Pause between drains with --follow.")] = "30s",
        max_wait: Annotated[
            str,
            typer.Option(
                "--max-wait",
                help="Give up on a backend after failing this long without progress (not with --follow).",
            ),
        ] = "5m",
        dead_letters: Annotated[bool, typer.Option("--dead-letters", help="List dead letters and exit.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="With --dead-letters: JSON lines.")] = False,
        requeue: Annotated[
            list[str] | None,
            typer.Option("--requeue", help="Re-queue dead letters ('all' or an event id, repeatable), then deliver."),
        ] = None,
        status: Annotated[bool, typer.Option("--status", help="Show each outbox's cursor and pending rows.")] = False,
        fmt: Annotated[
            str, typer.Option("--format", help="With --status: text|json (lag, pending, dead letters per destination).")
        ] = "text",
    ) -> None:
        """Deliver ledger records to billing backends: exactly once in effect, dead letters kept.

        Exits 1 when a destination failed (e.g. 401/403) or anything was dead-lettered in this run.
        """
        if fmt not in ("text", "json"):
            fail(f"--format must be text or json, not {fmt!r}")
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            wait = parse_duration(max_wait)
            pause = parse_duration(interval)
        except ValueError as exc:
            fail(str(exc))
        chosen, cfg = _destinations(config, to, url, path, name, only)
        if db is None and cfg is not None:
            db = cfg.settings.db
        with Ledger.open(db, migrate=False) as ledger:
            known = [c.destination for c in all_destinations(ledger)]
            names = [d.name for d in chosen] or known
            if dead_letters:
                _print_dead_letters(ledger, names, as_json)
                return
            if status:
                now = datetime.now(UTC)
                rows = [Outbox(ledger, n).status(now) for n in names]
                if fmt == "json":
                    sys.stdout.write(json.dumps({"destinations": rows}, sort_keys=True) + "\n")
                    return
                for row in rows:
                    lag = "-" if row["lag_seconds"] is None else f"{row['lag_seconds']}s"
                    console.print(
                        f"{row['destination']}: cursor {row['cursor']}, delivered {row['delivered']}, "
                        f"already there {row['duplicates']}, dead {row['dead_letters']}, pending {row['pending']}, "
                        f"lag {lag}",
                        highlight=False,
                        soft_wrap=True,
                        markup=False,
                    )
                return
            if requeue:
                ids = None if "all" in requeue else list(requeue)
                for dest_name in names:
                    n = Outbox(ledger, dest_name).requeue(ids)
                    if n:
                        console.print(f"{dest_name}: re-queued {n} dead letter(s)")
            if not chosen:
                if requeue:
                    return
                fail(
                    "no destination: use --to TYPE (with --url/--path), a config with destinations:, "
                    "or set LAGO_API_KEY"
                )
            if batch:
                chosen = [d.model_copy(update={"batch_size": batch}) for d in chosen]
            built, configs, _ = build_all(chosen)
            stop = threading.Event()
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
            deliverer = Deliverer(
                ledger, built, configs, items=item_specs(cfg), stop=stop, max_wait=None if follow else wait
            )
            try:
                if follow:

                    def show(summary: DeliverySummary) -> None:
                        if any(d.delivered or d.dead_lettered or d.error for d in summary.destinations):
                            _print_summary(summary)

                    try:
                        deliverer.run_forever(pause if pause > timedelta(0) else timedelta(seconds=1), show)
                    except KeyboardInterrupt:
                        stop.set()
                    return
                summary = deliverer.run_once()
            finally:
                deliverer.close()
                signal.signal(signal.SIGTERM, previous)
        _print_summary(summary)
        if not summary.ok:
            raise typer.Exit(1)
