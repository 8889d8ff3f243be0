"""``kubetally deliver``: parse options, run :mod:`kubetally.app.deliver`, show the results."""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from kubetally.cli.common import ConfigOption, DbOption, console, fail
from kubetally.config.names import DESTINATION_TYPES, KEY_VARIABLES
from kubetally.errors import ConfigError
from kubetally.periods import format_time, parse_duration

if TYPE_CHECKING:
    from kubetally.delivery.engine import DeliverySummary
    from kubetally.delivery.outbox import DeadLetterRow


def _print_dead_letters(rows: list[DeadLetterRow], as_json: bool) -> None:
    """One line per dead letter (JSON lines with ``--json``): what, for whom, and why."""
    from kubetally.record import dumps_exact

    for row in rows:
        if as_json:
            console.print_json(
                dumps_exact(
                    {
                        "destination": row.destination,
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
            f"{row.destination} {row.event_id} tenant={row.tenant} item={row.item} "
            f"quantity={format(row.quantity, 'f')} start={format_time(row.timestamp)} [{row.state}] {row.reason}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    if not rows and not as_json:
        console.print("no dead letters")


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
        from kubetally.app import deliver as use
        from kubetally.app.settings import SettingsResolver
        from kubetally.cli import render

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            wait = parse_duration(max_wait)
            pause = parse_duration(interval)
        except ValueError as exc:
            fail(str(exc))
        resolver = SettingsResolver.load(config)
        try:
            settings = use.deliver_settings(
                resolver, has_config=bool(config), db=db, to=to, url=url, path=path, name=name, only=only, batch=batch
            )
        except ConfigError as exc:
            fail(str(exc))
        with use.open_ledger(settings) as ledger:
            names = use.destination_names(ledger, settings)
            if dead_letters:
                _print_dead_letters(use.dead_letters(ledger, names), as_json)
                return
            if status:
                rows = use.status_rows(ledger, names)
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
                for dest_name, n in use.requeue(ledger, names, requeue).items():
                    if n:
                        console.print(f"{dest_name}: re-queued {n} dead letter(s)")
            if not settings.destinations:
                if requeue:
                    return
                fail(
                    "no destination: use --to TYPE (with --url/--path), a config with destinations:, "
                    "or set LAGO_API_KEY"
                )
            delivery = use.Delivery(settings, ledger, max_wait=None if follow else wait)
            previous = signal.signal(signal.SIGTERM, lambda *_: delivery.stop.set())
            try:
                if follow:

                    def show(summary: DeliverySummary) -> None:
                        if any(d.delivered or d.dead_lettered or d.error for d in summary.destinations):
                            render.delivery_summary(console, summary)

                    try:
                        delivery.run_forever(pause, show)
                    except KeyboardInterrupt:
                        delivery.stop.set()
                    return
                summary = delivery.run_once()
            finally:
                delivery.close()
                signal.signal(signal.SIGTERM, previous)
        render.delivery_summary(console, summary)
        if not summary.ok:
            raise typer.Exit(1)
