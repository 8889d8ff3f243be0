"""Benchmark: delivery throughput (events/s) into a local Lago-shaped server.

Two numbers over the same ledger and the same server:

* **kubetally** — :class:`kubetally.delivery.engine.Deliverer` draining the outbox: reading
  ledger rows, building events, encoding Lago batches of 100, posting them (two in flight while
  the next ones are built), and committing the cursor per group of acknowledged batches (the
  crash-safety cost);
* **plain loop** — the same batches already in memory, only serialised and posted one after
  another on one keep-alive connection: the floor any adapter has to pay.

The server is a minimal HTTP/1.1 keep-alive server in its own process that answers every
``POST /api/v1/events/batch`` with 200 (no validation), so the numbers measure the client
side::

    python bench/bench_delivery.py --records 20000
    python bench/bench_delivery.py --records 20000 --backend postgresql

Not part of the test suite (pytest never collects ``bench/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from kubetally.config.destinations import LagoConfig
from kubetally.delivery.destinations.lago import LagoDestination
from kubetally.delivery.engine import Deliverer
from kubetally.delivery.events import events_for
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind
from kubetally.record import UsageRecord

START = datetime(2026, 11, 1, tzinfo=UTC)
SKUS = ["H100", "A100", "L40S", "L4"]
KEY = "bench-key"


# -- a Lago-shaped server ------------------------------------------------------------------------


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = b'{"events":[]}'
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(response)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _serve(port: int, ready: Any) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- data ------------------------------------------------------------------------------------------


def _records(count: int, tenants: int) -> list[UsageRecord]:
    out = []
    for i in range(count):
        hour, tenant = divmod(i, tenants)
        start = START + timedelta(hours=hour)
        out.append(
            UsageRecord.measure(
                cluster="bench",
                kind="Pod",
                category="compute",
                item="gpu_hours",
                name=f"pod-{tenant}",
                namespace=f"ns-{tenant}",
                tenant=f"tenant-{tenant}",
                period_kind=PeriodKind.hourly,
                period=Period(start, start + timedelta(hours=1)),
                usage=Decimal(f"{tenant % 8 + 1}.000277778"),
                unit="hours",
                dimensions={"gpu_sku": SKUS[tenant % len(SKUS)], "capacity_type": "on-demand"},
            )
        )
    return out


def _open_ledger(backend: str, stack: ExitStack) -> Ledger:
    if backend == "postgresql":
        from kubetally.testing.postgres import postgres_server

        server = stack.enter_context(postgres_server())
        return stack.enter_context(Ledger.open(server.create_database("bench_delivery")))
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kt-bench-")))
    return stack.enter_context(Ledger.open(str(folder / "ledger.db")))


# -- the two contestants -----------------------------------------------------------------------------


def run_kubetally(ledger: Ledger, url: str, batch: int) -> float:
    config = LagoConfig(type="lago", name="bench", url=url, bootstrap=False, batch_size=batch, offboard_grace=None)
    destination = LagoDestination(config, {"LAGO_API_KEY": KEY})
    deliverer = Deliverer(ledger, [destination], [config], page_size=2000)
    started = time.perf_counter()
    summary = deliverer.run_once()
    elapsed = time.perf_counter() - started
    deliverer.close()
    [result] = summary.destinations
    if result.error or result.pending:
        raise SystemExit(f"delivery failed: {result.error} (pending {result.pending})")
    return elapsed


def run_plain(records: list[UsageRecord], url: str, batch: int) -> float:
    """Only what cannot be avoided: serialise the same event bodies and post them in a loop."""
    config = LagoConfig(type="lago", name="plain", url=url, bootstrap=False)
    encoder = LagoDestination(config, {"LAGO_API_KEY": KEY})
    bodies = [encoder.event_body(e) for i, r in enumerate(records, 1) for e in events_for(r, i, None)]
    encoder.close()
    with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {KEY}"}) as client:
        started = time.perf_counter()
        for i in range(0, len(bodies), batch):
            payload = json.dumps({"events": bodies[i : i + batch]}, separators=(",", ":"))
            response = client.post("/events/batch", content=payload, headers={"Content-Type": "application/json"})
            response.raise_for_status()
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100, help="events per request (Lago max 100)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)

    port = _free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    ready.wait(10)
    url = f"http://127.0.0.1:{port}"
    try:
        with ExitStack() as stack:
            ledger = _open_ledger(args.backend, stack)
            records = _records(args.records, args.tenants)
            ledger.write(records)
            plain = run_plain(records, url, args.batch)
            ours = run_kubetally(ledger, url, args.batch)
    finally:
        server.terminate()
    result = {
        "backend": args.backend,
        "events": args.records,
        "batch": args.batch,
        "kubetally_seconds": round(ours, 3),
        "kubetally_events_per_s": round(args.records / ours),
        "plain_loop_seconds": round(plain, 3),
        "plain_loop_events_per_s": round(args.records / plain),
        "overhead": round(ours / plain, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.records} events into a Lago-shaped server, batches of {args.batch}, ledger on {args.backend}")
        print(f"  kubetally deliver : {result['kubetally_events_per_s']:>8} events/s  ({ours:.2f} s)")
        print(f"  plain post loop   : {result['plain_loop_events_per_s']:>8} events/s  ({plain:.2f} s)")
        print(f"  overhead          : {result['overhead']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
