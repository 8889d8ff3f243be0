"""Which kind of file an operator handed kubetally, so ``validate`` checks each with the reader
that will read it (and says which one it took)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubetally import yamlfile

KUBETALLY_YAML = "kubetally.yaml"
CONFIGMAP = "Alauda ConfigMap"
PRICE_BOOK = "price book"
SCENARIO = "simulator scenario"

#: Top-level keys only a price book has together (a kubetally.yaml holds them under pricing:).
_PRICE_BOOK_KEYS = {"currency", "prices"}
#: Top-level keys only a scenario has.
_SCENARIO_KEYS = {"objects", "events"}


def detect(path: str | Path) -> str:
    """The kind of ``path``; unreadable or unparsable files are :data:`KUBETALLY_YAML` so the
    config loader reports their problem with its usual wording."""
    try:
        documents: list[Any] = yamlfile.load_all(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return KUBETALLY_YAML
    mappings = [d for d in documents if isinstance(d, dict)]
    if any(d.get("kind") == "ConfigMap" for d in mappings):
        return CONFIGMAP
    if len(mappings) == 1:
        keys = set(mappings[0])
        if keys >= _PRICE_BOOK_KEYS:
            return PRICE_BOOK
        if keys & _SCENARIO_KEYS and not keys & {"items", "display", "destinations", "pricing", "prometheus"}:
            return SCENARIO
    return KUBETALLY_YAML
