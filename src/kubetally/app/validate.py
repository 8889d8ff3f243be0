"""Check configuration files (``kubetally validate``): every kind kubetally reads, each with the
reader that will read it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kubetally.config import Config, load_config
from kubetally.errors import ConfigError


@dataclass
class Validation:
    config: Config
    #: Problems found beyond the files themselves (PromQL a Prometheus refused to parse).
    problems: list[str] = field(default_factory=list)
    #: Each file and the kind it was checked as (kubetally.yaml, Alauda ConfigMap, price book, …).
    kinds: list[tuple[str, str]] = field(default_factory=list)


def validate(files: Iterable[str | Path], *, prometheus: str | None = None) -> Validation:
    """Check ``files``: kubetally.yaml and Alauda ConfigMaps together (they cross-check), each
    price book and simulator scenario on its own. A :class:`~kubetally.errors.ConfigError` lists
    every problem of every file; with ``prometheus``, that server also parses every query."""
    from kubetally.config import kinds

    paths = [Path(f) for f in files]
    found = {path: kinds.detect(path) for path in paths}
    failures: list[str] = []
    for path in paths:
        try:
            if found[path] == kinds.PRICE_BOOK:
                from kubetally.config.pricing import load_pricebook_file

                load_pricebook_file(path)
            elif found[path] == kinds.SCENARIO:
                from kubetally.sim.scenario import Scenario

                Scenario.load(path)
        except ConfigError as exc:
            failures.extend(exc.problems)
    try:
        config = load_config([p for p in paths if found[p] in (kinds.KUBETALLY_YAML, kinds.CONFIGMAP)])
    except ConfigError as exc:
        failures.extend(exc.problems)
    if failures:
        raise ConfigError(failures)
    described = [(str(p), found[p]) for p in paths]
    if prometheus is None:
        return Validation(config, kinds=described)
    from kubetally.sources.prometheus.check import check_queries

    return Validation(config, check_queries(config, prometheus), kinds=described)
