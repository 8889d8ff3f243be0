"""``kubetally sim``: serve or check a simulated Kubernetes API scenario.

``sim serve`` gives operators and the demo a cluster to point the agent, kubectl or any client at
without a real cluster; ``sim check`` validates a scenario file before anyone relies on it.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from kubetally.cli.common import console, fail
from kubetally.errors import KubetallyError
from kubetally.periods import format_time

if TYPE_CHECKING:  # the simulator is imported when a sim command runs, not for --help
    from kubetally.sim.scenario import Scenario

app = typer.Typer(help="Simulated Kubernetes API server for demos and tests.", no_args_is_help=True)

ScenarioOption = Annotated[
    str,
    typer.Option("--scenario", "-s", help="Scenario YAML file, or the name of a packaged scenario (e.g. gpu-cloud)."),
]


def _load(scenario: str) -> Scenario:
    from kubetally.sim.scenario import Scenario, ScenarioError, resolve_scenario_path

    try:
        return Scenario.load(resolve_scenario_path(scenario))
    except ScenarioError as exc:
        fail(str(exc))


@app.command()
def serve(
    scenario: ScenarioOption,
    port: Annotated[int, typer.Option("--port", "-p", help="Port on 127.0.0.1 (0: pick a free one).")] = 8001,
    speed: Annotated[float, typer.Option("--speed", help="Virtual seconds per wall second (0: frozen clock).")] = 1.0,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="Also write a kubeconfig here.")] = None,
) -> None:
    """Serve SCENARIO as a Kubernetes API (list/get/watch, discovery) until interrupted."""
    if speed < 0:
        fail(f"--speed must be >= 0, not {speed}")
    if not 0 <= port <= 65535:
        fail(f"--port must be 0-65535, not {port}")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)  # a service manager's stop is as clean as Ctrl-C
    try:
        _serve(_load(scenario), port, speed, kubeconfig)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(loaded: Scenario, port: int, speed: float, kubeconfig: Path | None) -> None:
    from kubetally.sim.server import SimServer

    sim = SimServer(loaded, port=port, speed=speed)
    try:
        sim.start()
    except KubetallyError as exc:
        fail(str(exc))
    try:
        clock = "frozen" if not speed else f"×{speed:g}"
        console.print(
            f"serving [bold]{loaded.source}[/] at [bold]{sim.url}[/] "
            f"(virtual time {format_time(sim.now)}, clock {clock}, "
            f"{len(loaded.objects)} objects, {len(loaded.events)} events)",
            highlight=False,
            soft_wrap=True,
        )
        if kubeconfig is not None:
            console.print(f"kubeconfig written to {sim.kubeconfig(kubeconfig)}", highlight=False, soft_wrap=True)
        console.print(f"try: kubectl --server {sim.url} get nodes", highlight=False, soft_wrap=True)
        sim.wait()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        sim.close()


@app.command()
def check(scenario: ScenarioOption) -> None:
    """Validate SCENARIO and summarise it; exits non-zero naming every bad object."""
    loaded = _load(scenario)
    kinds = Counter(f"{o['kind']}" for o in loaded.objects)
    console.print(
        f"{loaded.source}: ok — now {format_time(loaded.now)}, {len(loaded.objects)} objects, "
        f"{len(loaded.events)} events",
        highlight=False,
        soft_wrap=True,
    )
    for kind, count in sorted(kinds.items()):
        console.print(f"  {kind}: {count}", highlight=False, soft_wrap=True)
    if loaded.events:
        console.print(
            f"  events from {format_time(loaded.events[0].at)} to {format_time(loaded.events[-1].at)}",
            highlight=False,
            soft_wrap=True,
        )


@app.command("list")
def list_scenarios() -> None:
    """List the scenarios shipped with kubetally."""
    from kubetally.sim.scenario import packaged_scenarios

    for name, path in packaged_scenarios().items():
        console.print(f"{name}\t{path}", highlight=False, soft_wrap=True)
