"""The ``kubetally`` command. Each sub-command lives in its own module of this package;
this file only wires them together and turns errors into one-line reasons and exit codes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kubetally.cli import (
    agent,
    budgets,
    collect,
    deliver,
    demo,
    export,
    migrate,
    prune,
    reconcile,
    records,
    report,
    server,
    sim,
    validate,
)
from kubetally.cli.common import console_err, fail
from kubetally.errors import KubetallyError

app = typer.Typer(
    name="kubetally",
    help="Usage-based metering for multi-tenant Kubernetes GPU clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("kubetally")
        except PackageNotFoundError:
            number = "unknown"
        sys.stdout.write(f"kubetally {number}\n")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="Diagnostics on stderr from this level: debug, info, warning, error.")
    ] = "warning",
    log_format: Annotated[
        str, typer.Option("--log-format", help="Diagnostics as text lines or JSON lines: text, json.")
    ] = "text",
) -> None:
    """Usage-based metering for multi-tenant Kubernetes GPU clouds."""
    from kubetally import logs  # not at import time: `--help` stays light

    try:
        logs.setup(log_level, log_format)
    except ValueError as exc:
        fail(str(exc))
    logs.state.update(level=log_level.lower(), format=log_format)


for module in (demo, validate, collect, agent, records, report, budgets, deliver, reconcile, migrate, prune, server):
    module.register(app)
app.add_typer(export.app, name="export")
app.add_typer(sim.app, name="sim")


def main() -> None:
    try:
        app()
    except KubetallyError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console_err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
