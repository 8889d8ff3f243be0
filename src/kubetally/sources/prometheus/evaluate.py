"""The evaluation grid of a PromQL item, and how its points become one usage quantity.

Grid (docs/architecture.md, "Usage semantics for PromQL items")
----------------------------------------------------
For a period ``[T, T+P)`` and step ``s`` the usage query is evaluated by one range query from
``T+s`` to ``T+P`` at step ``s``: for an hour at 5m that is T+5m, T+10m … T+60m, twelve points.
Each point stands for the step that *ends* at it, ``(t-s, t]``, so the twelve steps tile the
hour with no gap and no overlap, and the point at T+60m (the next hour's first instant) belongs
to this hour. ``aggregation`` turns the points into usage:

* ``sum``: usage = Σ points — right for ``increase(x[5m])`` (each point is what the counter
  gained in its step) and for value-1 series counted in steps;
* ``integral``: usage = Σ point × s / 3600, i.e. unit-hours — right for ``rate(x[5m])`` (cores
  → core-hours) and gauges (``avg_over_time(x[5m])``: bytes → byte-hours). It is rounded
  half-even to 9 decimal places, like every hour quantity in kubetally (1 s ≈ 0.000277778 h),
  because a step of 5m is 1/12 h and has no finite decimal.

How ``increase()``/``rate()`` and the ``[5m]`` range interact with the grid
------------------------------------------------------------------------------
The range in the query must equal the step. A longer range makes neighbouring windows overlap
and counts usage twice; a shorter one leaves parts of each step unseen.

Inside one window ``increase`` takes the last sample minus the first, adds back the value
before every drop (a *counter reset*: the process restarted and counted again from zero), and
then *extrapolates* from the first and last sample to the window's edges: when a sample lies
within 1.1 average scrape intervals of an edge it stretches the result to that edge, otherwise
by half an interval; towards the start it never extrapolates below zero (a new counter starts
at 0). ``rate`` is the same number divided by the range in seconds.

* **Scrapes on the step boundaries** (Prometheus 2.x range selectors are closed, ``[t-5m, t]``):
  a sample exactly at a boundary ends one window and starts the next, so consecutive
  increases share it and telescope: Σ over the period = counter(T+P) − counter(T) plus the
  reset corrections, exactly. No extrapolation happens because both edges hold a sample.
* **Scrapes between boundaries** (the normal case: each target has its own scrape offset):
  each window sees only its own samples; the span between the last sample of one window and
  the first of the next (shorter than one scrape interval) is covered by both windows
  extrapolating at their own average slope. That is exact for a counter growing at a constant
  rate; otherwise the increase inside that short span is estimated from the neighbouring
  slopes instead of measured — only those spans, one per step boundary, are estimated.
* **Counter resets** lose only what the old process counted between its last scrape and its
  restart — increments nobody ever observed. Everything after the restart is counted.
* **Series that start or end inside the period** produce points only for the steps in which
  they have samples (two or more for ``increase``/``rate``), so a pod that ran 20 minutes
  yields four 5-minute points, not twelve. In the window where a counter first appears,
  extrapolation goes back to where the counter would have been zero, not before.
* **Gauges** through ``avg_over_time(x[5m])``: a window without samples yields no point, so an
  absent series is absent, never 0. Under 2.x a sample exactly on a boundary is averaged into
  both windows; this matters only for a series that appears, vanishes or changes value exactly
  on a boundary.
* **Floating point.** Prometheus computes in binary floats; its scaling by e.g. 300/285 can
  leave a last-digit residue (``0.7499999999999999``). kubetally takes the decimal string it
  is given, exactly, and rounds nothing but ``integral`` hours.

The test data (``tests/prometheus/prom_scenario.py``) scrapes every 15 s on the step grid and
grows counters at constant, binary-exact rates, with a sample on both edges of every window a
counter is alive in, so every expected value in the tests is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from kubetally.config.costmodel import Aggregation
from kubetally.periods import Period
from kubetally.record import HOURS_PLACES

#: Enough digits that summing thousands of 17-digit Prometheus values never rounds.
_PRECISION = 80


def grid(period: Period, step: timedelta) -> list[datetime]:
    """The evaluation instants ``T+step`` … ``T+period`` (each ending the step it stands for)."""
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    count, rest = divmod(period.length, step)
    if rest:
        raise ValueError(f"step {step} does not divide the period {period}")
    return [period.start + step * (i + 1) for i in range(count)]


def range_window(period: Period, step: timedelta) -> tuple[datetime, datetime]:
    """``start`` and ``end`` of the range query that evaluates exactly :func:`grid`."""
    return period.start + step, period.end


def on_grid(
    points: Iterable[tuple[datetime, Decimal]], period: Period, step: timedelta
) -> Iterator[tuple[datetime, Decimal]]:
    """Only the points that sit on the period's grid (a compatible server may add others)."""
    wanted = set(grid(period, step))
    for at, value in points:
        if at in wanted:
            yield at, value


def aggregate(values: Iterable[Decimal], aggregation: Aggregation, step: timedelta) -> Decimal:
    """Turn step points into usage: Σ points (``sum``) or Σ point × step / 1 h (``integral``)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        total = sum(values, Decimal(0))
        if aggregation is Aggregation.sum:
            return +total
        step_seconds = Decimal(int(step.total_seconds()))
        hours = total * step_seconds / Decimal(3600)
        return hours.quantize(HOURS_PLACES, rounding=ROUND_HALF_EVEN)
