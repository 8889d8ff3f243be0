"""Reading YAML that operators wrote: safe loading, and every failure as one line.

PyYAML's own messages span several lines (a context, a marker line with ``^``) and a date that
does not exist (``effective: 2026-13-01``) escapes as a bare ``ValueError`` from its timestamp
constructor. Every kubetally file reader goes through here so both end as one line naming the
line and column, which callers prefix with the file.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError


class Loader(yaml.SafeLoader):
    """SafeLoader whose timestamps that cannot exist are a YAML error with a position."""

    def construct_yaml_timestamp(self, node: Any) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise ConstructorError(
                None, None, f"not a valid date/time {node.value!r} ({exc})", node.start_mark
            ) from None


Loader.add_constructor("tag:yaml.org,2002:timestamp", Loader.construct_yaml_timestamp)


def load(text: str) -> Any:
    return yaml.load(text, Loader=Loader)


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=Loader))


def describe(exc: yaml.YAMLError) -> str:
    """``line 3 column 5: mapping values are not allowed here`` — one line, whatever PyYAML said."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())
