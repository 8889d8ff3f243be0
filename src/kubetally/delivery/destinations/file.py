"""File: one JSON line per event, appended — for audits, for the demo, for piping elsewhere.

Exactly once: on open, the ids already in the file are read, so a batch re-sent after a crash
(written, but the cursor not yet moved) is counted as *already existing* and not written twice.
A line cut short by a crash is removed first. Every batch is flushed and fsync'ed before it
counts as delivered. Negative quantities (downward corrections) are written as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from datetime import timedelta
from pathlib import Path

from kubetally.config.destinations import FileConfig
from kubetally.delivery.destinations.base import FatalError, ItemSpec, ObjectStore, SendResult
from kubetally.delivery.events import Event
from kubetally.errors import ConfigError


class FileDestination:
    kind = "file"
    max_batch = 1000
    max_age: timedelta | None = None
    label_keys: Collection[str] | None = None

    def __init__(self, config: FileConfig):
        self.config = config
        self.name = config.name
        self.offboard_grace = config.offboard_grace
        if config.batch_size:
            self.max_batch = config.batch_size
        self.path = Path(config.path).expanduser()
        if not self.path.parent.is_dir():
            raise ConfigError(
                [f"destination {config.name}: path {self.path}: directory {self.path.parent} does not exist"]
            )
        self._ids: set[str] | None = None

    def _load(self) -> set[str]:
        ids: set[str] = set()
        if not self.path.exists():
            return ids
        with self.path.open("rb+") as fh:
            data = fh.read()
            complete = data.rfind(b"\n") + 1
            if complete != len(data):  # a crash cut the last line: drop it, it will be re-sent
                fh.truncate(complete)
            for line in data[:complete].splitlines():
                if line.strip():
                    try:
                        ids.add(json.loads(line)["id"])
                    except (ValueError, KeyError, TypeError):
                        raise FatalError(f"{self.name}: {self.path} has a line that is not a kubetally event") from None
        return ids

    def bind(self, store: ObjectStore) -> None:
        return None

    def bootstrap(self, items: Sequence[ItemSpec]) -> None:
        return None

    def check(self, event: Event) -> str | None:
        if event.quantity < 0 and not self.config.negative_corrections:
            return f"negative correction not written (negative_corrections is off for {self.name})"
        return None

    def prepare(self, events: Sequence[Event]) -> dict[str, str]:
        return {}

    def send(self, events: Sequence[Event]) -> SendResult:
        if self._ids is None:
            self._ids = self._load()
        duplicates = {e.id for e in events if e.id in self._ids}
        lines = [e.to_json() + "\n" for e in events if e.id not in self._ids]
        if lines:
            try:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write("".join(lines))
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise FatalError(f"{self.name}: cannot write {self.path}: {exc.strerror or exc}") from None
            self._ids.update(e.id for e in events)
        return SendResult(duplicates=duplicates)

    def offboard(self, tenant: str) -> None:
        return None

    def close(self) -> None:
        return None
