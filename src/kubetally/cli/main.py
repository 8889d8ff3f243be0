"""The ``kubetally`` command. Each sub-command lives in its own module of this package;
this file only wires them together and turns errors into one-line reasons and exit codes."""

from __future__ import annotations

import sys

import typer

from kubetally.cli import agent, collect, deliver, demo, export, migrate, records, report, sim, validate
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

for module in (demo, validate, collect, agent, records, report, deliver, migrate):
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
