"""Run one fake billing backend standalone: ``python -m kubetally.testing.backends lago --port 8080``.

For benchmarks and manual runs; prints the base URL and API key, then serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from kubetally.testing.backends import BACKENDS, create_backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubetally.testing.backends", description=__doc__)
    parser.add_argument("name", choices=BACKENDS)
    parser.add_argument("--port", type=int, default=None, help="listen port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", default=None, help="credential the fake accepts (webhook: HMAC secret)")
    args = parser.parse_args(argv)

    backend = create_backend(args.name, api_key=args.api_key, host=args.host, port=args.port)
    backend.start()
    print(backend.base_url, flush=True)
    print(f"api key: {backend.api_key}", file=sys.stderr, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        backend.stop()
        violations = backend.violations
        print(f"{len(backend.events)} events accepted, {len(violations)} contract violations", file=sys.stderr)
        for line in violations[:50]:
            print(f"  {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
