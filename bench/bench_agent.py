"""Benchmark: the agent's steady state — CPU seconds and RSS per metered hour — at provider scale.

For each cluster size this generates the vCluster GPU cloud of ``bench_scale.py``
(:func:`kubetally.sim.generate.generate_cluster`) plus hourly churn as scenario events (each hour
1 % of the running pods finish — a MODIFIED with the container terminated, then DELETED — the same
number of new pods start — ADDED pending, then MODIFIED running — and one node joins and an
earlier-joined one leaves), serves it in this process (``SimServer``, frozen virtual clock) and
starts ``kubetally agent --clock apiserver`` against it (its own process) into a fresh SQLite
ledger. The agent first catches up (the hour before the start, ``max_backfill: 1h``); then this
script moves the virtual clock through each hour in small steps and holds it just past the hour's
end + settle until the agent has written that hour. Per metered hour it reports the agent's CPU
seconds (user + system, from ``/proc/<pid>/stat``, so other processes on the machine do not count)
and its RSS (peak sampled during the hour, and at the hour's close).

The clock is compressed (an hour of churn in ~15 s of wall time), so what the agent does per wall
second regardless of events (re-discovering tenants every ``reconcile_interval``, ticks, watch
reconnects) is measured separately, idle, and scaled to a real hour::

    python bench/bench_agent.py --pods 1000 10000 --hours 3
    python bench/bench_agent.py --pods 100000 --hours 2 --profile bench/.data/agent.prof

``--profile`` runs the agent under cProfile (its main thread: applying watch events, closing
hours) and writes the stats when it exits; it inflates the CPU figures. Not part of the test
suite (pytest never collects ``bench/``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kubetally.periods import format_time, parse_time
from kubetally.sim import SimServer
from kubetally.sim.generate import generate_cluster
from kubetally.sim.scenario import Scenario

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
START = parse_time("2026-11-04T00:05:00Z")
SETTLE = timedelta(minutes=2)
TICKS = os.sysconf("SC_CLK_TCK")
WRITTEN = re.compile(r"wrote \d+ period\(s\).* up to (\S+): (\d+) new")


def churn_events(
    cluster: dict[str, Any], start: datetime, hours: int, rate: float, seed: int = 11
) -> list[dict[str, Any]]:
    """Scenario events: per hour ``rate`` of the running pods finish and as many new ones start,
    at arbitrary seconds; one node joins and (from the second hour) one joined earlier leaves."""
    rng = random.Random(seed)
    running = [o for o in cluster["objects"] if o["kind"] == "Pod" and o["status"]["phase"] == "Running"]
    nodes = [o for o in cluster["objects"] if o["kind"] == "Node" and o["metadata"]["name"].startswith("h100-")]
    template = running[0]
    events: list[dict[str, Any]] = []
    joined: list[dict[str, Any]] = []
    serial = 0
    for hour in range(hours):
        base = start + timedelta(hours=hour)
        count = max(1, int(len(running) * rate))
        for pod in rng.sample(running, count):
            running.remove(pod)
            at = base + timedelta(seconds=rng.randrange(0, 3500))
            ended = json.loads(json.dumps(pod))
            started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
            ended["status"]["phase"] = "Succeeded"
            status = ended["status"]["containerStatuses"][0]
            status["ready"] = False
            status["state"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": started,
                    "finishedAt": format_time(at),
                }
            }
            events.append({"at": at, "type": "MODIFIED", "object": ended})
            gone = {"apiVersion": "v1", "kind": "Pod", "metadata": dict(pod["metadata"])}
            gone["metadata"]["deletionTimestamp"] = format_time(at + timedelta(seconds=20))
            events.append({"at": at + timedelta(seconds=20), "type": "DELETED", "object": gone})
        for _ in range(count):
            serial += 1
            peer = rng.choice(nodes)["metadata"]["name"]
            new = json.loads(json.dumps(rng.choice(running) if running else template))
            tenant = new["metadata"]["labels"]["vcluster.loft.sh/managed-by"]
            ns = new["metadata"]["namespace"]
            at = base + timedelta(seconds=rng.randrange(0, 3500))
            new["metadata"] = {**new["metadata"], "name": f"new-{serial:07d}-x-{ns}-x-{tenant}"}
            new["metadata"]["creationTimestamp"] = format_time(at)
            new["spec"]["nodeName"] = peer
            pending = json.loads(json.dumps(new))
            pending["status"] = {"phase": "Pending"}
            events.append({"at": at, "type": "ADDED", "object": pending})
            at += timedelta(seconds=rng.randrange(5, 60))
            new["status"]["startTime"] = format_time(at)
            new["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": format_time(at)}}
            events.append({"at": at, "type": "MODIFIED", "object": new})
            running.append(new)
        node = json.loads(json.dumps(nodes[hour % len(nodes)]))
        at = base + timedelta(seconds=rng.randrange(0, 3500))
        node["metadata"]["name"] = f"h100-new-{hour:04d}"
        node["metadata"]["labels"]["kubernetes.io/hostname"] = node["metadata"]["name"]
        node["metadata"]["creationTimestamp"] = format_time(at)
        events.append({"at": at, "type": "ADDED", "object": node})
        if joined:
            leaving = joined.pop(0)
            at = base + timedelta(seconds=rng.randrange(0, 3500))
            events.append(
                {"at": at, "type": "DELETED", "object": {"apiVersion": "v1", "kind": "Node", "metadata": leaving}}
            )
        joined.append({"name": node["metadata"]["name"]})
    events.sort(key=lambda e: e["at"])
    for event in events:
        event["at"] = format_time(event["at"])
    return events


class Proc:
    """CPU seconds and RSS of one process, from /proc (Linux)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def take_peak(self) -> int:
        peak, self.peak = self.peak, self.rss()
        return max(peak, self.peak)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.rss())
            except (FileNotFoundError, ProcessLookupError):
                return

    def stop(self) -> None:
        self._stop.set()


class Written:
    """Follows the agent's log for "wrote … up to <end>" lines."""

    def __init__(self, stream: Any, log: Path):
        self.until: datetime | None = None
        self.records = 0
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self._log = log.open("w")
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._log.write(line)
            self._log.flush()
            found = WRITTEN.search(line)
            if found:
                with self.changed:
                    self.until = parse_time(found.group(1))
                    self.records += int(found.group(2))
                    self.changed.notify_all()

    def wait(self, end: datetime, timeout: float, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.until is None or self.until < end:
                if proc.poll() is not None:
                    raise SystemExit(f"the agent exited ({proc.returncode}); see its log")
                if time.monotonic() > deadline:
                    raise SystemExit(f"the agent did not write up to {format_time(end)} in {timeout:.0f} s")
                self.changed.wait(1)


def run(
    pods: int, hours: int, rate: float, idle: float, workdir: Path, profile: Path | None, src: Path = SRC
) -> dict[str, Any]:
    cluster = generate_cluster(pods, now=START, hours=48)
    cluster["events"] = churn_events(cluster, START, hours + 1, rate)
    events = len(cluster["events"])
    sim = SimServer(Scenario.from_dict(cluster, f"generated-{pods}"))
    del cluster
    db = workdir / f"agent-{pods}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    config = workdir / "agent.yaml"
    config.write_text(
        "collection:\n  max_backfill: 1h\n  settle_delay: 2m\n"
        "kubernetes:\n  tick_interval: 60s\n  reconcile_interval: 30s\n"  # the defaults, said out loud
    )
    rows: list[dict[str, Any]] = []
    with sim:
        kubeconfig = sim.kubeconfig(workdir / f"kubeconfig-{pods}")
        command = [sys.executable]
        if profile is not None:
            command += ["-m", "cProfile", "-o", str(profile)]
        end = START.replace(minute=0) + timedelta(hours=hours)
        command += ["-m", "kubetally.cli.main", "agent", "--config", str(config), "--kubeconfig", str(kubeconfig)]
        command += ["--cluster", "bench", "--db", str(db), "--clock", "apiserver"]
        command += ["--until", format_time(end + SETTLE + timedelta(seconds=30))]
        environ = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        environ.pop("LAGO_API_KEY", None)
        started = time.monotonic()
        agent = subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        proc = Proc(agent.pid)
        written = Written(agent.stdout, workdir / f"agent-{pods}.log")
        try:
            # Catch-up: the hour before START (max_backfill 1 h), from the first LIST.
            first = START.replace(minute=0)
            written.wait(first, 3600, agent)
            rows.append(
                {
                    "pods": pods,
                    "what": "catch-up (start, LIST, 1 h backfill)",
                    "cpu": proc.cpu(),
                    "rss_gb": proc.rss() / 1e9,
                    "peak_gb": proc.take_peak() / 1e9,
                    "records": written.records,
                    "seconds": time.monotonic() - started,
                }
            )
            print(f"{pods} pods: {rows[-1]}", flush=True)
            # Idle: what the agent costs per wall second with no events (reconcile, ticks, watches).
            cpu = proc.cpu()
            time.sleep(idle)
            idle_rate = (proc.cpu() - cpu) / idle
            rows.append({"pods": pods, "what": "idle per wall second", "cpu": idle_rate})
            print(f"{pods} pods: idle {idle_rate:.4f} CPU-s per wall second", flush=True)
            now = START
            for hour in range(hours):
                hour_end = first + timedelta(hours=hour + 1)
                target = hour_end + SETTLE + timedelta(seconds=10)
                cpu, records, wall = proc.cpu(), written.records, time.monotonic()
                while now < target:  # 30 virtual seconds per step: the watches deliver as they go
                    now = min(now + timedelta(seconds=30), target)
                    sim.advance(now)
                    time.sleep(0.1)
                written.wait(hour_end, 3600, agent)
                rows.append(
                    {
                        "pods": pods,
                        "what": f"hour {format_time(hour_end - timedelta(hours=1))}",
                        "cpu": proc.cpu() - cpu,
                        "wall": time.monotonic() - wall,
                        "rss_gb": proc.rss() / 1e9,
                        "peak_gb": proc.take_peak() / 1e9,
                        "records": written.records - records,
                        "seconds": time.monotonic() - wall,
                    }
                )
                print(f"{pods} pods: {rows[-1]}", flush=True)
            sim.advance(end + SETTLE + timedelta(seconds=40))
            agent.wait(timeout=600)
        finally:
            proc.stop()
            if agent.poll() is None:
                agent.terminate()
                agent.wait(timeout=120)
    steady = [r for r in rows if r["what"].startswith("hour")]
    return {"pods": pods, "events": events, "rows": rows, "idle": idle_rate, "steady": steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--hours", type=int, default=3, help="metered hours after the catch-up")
    parser.add_argument("--churn", type=float, default=0.01, help="share of running pods replaced per hour")
    parser.add_argument("--idle", type=float, default=60.0, help="wall seconds of idle measurement")
    parser.add_argument("--workdir", type=Path, default=HERE / ".data" / "agent")
    parser.add_argument("--profile", type=Path, help="cProfile the agent; stats file (one size only)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--src", type=Path, default=SRC, help="the agent's source tree (e.g. an earlier revision's)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = [run(pods, args.hours, args.churn, args.idle, args.workdir, args.profile, args.src) for pods in args.pods]
    print()
    print(
        "| pods | metered hour | records | CPU-s measured | CPU-s events + close (measured − idle × wall) "
        "| per real hour (+ idle × 3600 s) | peak RSS | RSS after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        for row in result["rows"]:
            if row["what"] == "idle per wall second":
                continue
            events = per_hour = None
            if row["what"].startswith("hour"):
                events = row["cpu"] - result["idle"] * row["wall"]
                per_hour = events + result["idle"] * 3600
            print(
                f"| {row['pods']:,} | {row['what']} | {row['records']:,} | {row['cpu']:.1f} | "
                f"{'' if events is None else f'{events:.1f}'} | "
                f"{'' if per_hour is None else f'{per_hour:.1f}'} | {row['peak_gb']:.2f} GB | {row['rss_gb']:.2f} GB |"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
