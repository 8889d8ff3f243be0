"""How the commands show results: rich tables and one-line summaries.

The use cases in :mod:`kubetally.app` and the sources return result objects; drawing them is
the command line's job alone, so the demo, the server and tests get the same results without a
terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kubetally.periods import format_time

if TYPE_CHECKING:
    from kubetally.delivery.engine import DeliverySummary
    from kubetally.sources.kubernetes.run import KubernetesCollection
    from kubetally.sources.prometheus.run import ProgressHook, RunSummary


def warner(console: Console) -> Callable[[str], None]:
    """A ``warn`` callback printing ``warning: …`` lines."""

    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    return warn


def notifier(console: Console) -> Callable[[str], None]:
    def notify(message: str) -> None:
        console.print(message, highlight=False)

    return notify


@contextmanager
def progress_bar(console: Console) -> Iterator[ProgressHook]:
    """A progress hook drawing a transient bar (nothing when not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        bars: dict[int, object] = {}

        def hook(done: int, total: int, description: str) -> None:
            if 0 not in bars:
                bars[0] = progress.add_task("collecting", total=total)
            bar = bars[0]
            progress.update(bar, total=total, completed=done, description=description or "collecting")  # type: ignore[arg-type]
            if done >= total:
                progress.remove_task(bar)  # type: ignore[arg-type]
                bars.clear()

        yield hook


def kubernetes_collection(console: Console, collection: KubernetesCollection) -> None:
    result = collection
    if result.periods:
        span = f"{format_time(result.periods[0].start)} … {format_time(result.periods[-1].end)}"
        console.print(
            f"kubernetes: {len(result.periods)} period(s) {span}, {collection.tenants} tenant(s): "
            f"{result.written.inserted} new, {result.written.revised} revised, "
            f"{result.written.unchanged} unchanged record(s)",
            highlight=False,
        )
    else:
        console.print(
            f"kubernetes: no closed period to collect (now {format_time(collection.now) if collection.now else '-'})",
            highlight=False,
        )


def prometheus_summary(console: Console, summary: RunSummary, *, written_only: bool = False) -> None:
    """The per-item table; ``written_only`` (after a failure): only items that wrote periods,
    and nothing at all when none did ("no closed period" would contradict the error)."""
    if summary.periods == 0:
        if not written_only:
            console.print("no closed period to collect", highlight=False)
        return
    # Single-space columns: the table fits 80 columns with item names up to ~24 characters.
    table = Table(
        title="Prometheus collection", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0)
    )
    table.add_column("item", no_wrap=True, overflow="ellipsis")
    for column in ("periods", "records", "new", "revised", "same"):
        table.add_column(column, justify="right", min_width=len(column), no_wrap=True)
    table.add_column("collected until", no_wrap=True, min_width=20)
    for progress in summary.items.values():
        if written_only and not progress.periods:
            continue
        table.add_row(
            progress.item,
            str(progress.periods),
            str(progress.records),
            str(progress.inserted),
            str(progress.revised),
            str(progress.unchanged),
            format_time(progress.watermark) if progress.watermark else "-",
        )
    console.print(table)


def delivery_summary(console: Console, summary: DeliverySummary, *, title: str = "delivery") -> None:
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
