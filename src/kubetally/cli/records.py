"""``kubetally records``: the ledger as JSON lines, in the record shape of docs/architecture.md."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kubetally.cli.common import DbOption, FromOption, ToOption, fail, parse_time_option


def register(app: typer.Typer) -> None:
    @app.command("records")
    def records(
        db: DbOption = None,
        start: FromOption = None,
        end: ToOption = None,
        item: Annotated[list[str] | None, typer.Option("--item", help="Only these items (repeatable).")] = None,
        namespace: Annotated[str | None, typer.Option("--namespace", help="Only this namespace.")] = None,
        tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
        cluster: Annotated[str | None, typer.Option("--cluster", help="Only this cluster.")] = None,
        history: Annotated[
            bool, typer.Option("--history", help="Include superseded revisions, not only the current one.")
        ] = False,
    ) -> None:
        """Print records whose period starts in [--from, --to) as JSON lines."""
        from kubetally.app.records import records as stored

        since = parse_time_option(start, "--from")
        until = parse_time_option(end, "--to")
        if since and until and since >= until:
            fail("--from must be before --to")
        out = sys.stdout
        for record in stored(
            db=db,
            start=since,
            end=until,
            items=item,
            namespace=namespace,
            tenant=tenant,
            cluster=cluster,
            history=history,
        ):
            out.write(record.to_json())
            out.write("\n")
