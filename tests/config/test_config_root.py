"""The typed configuration root: every section is a typed field, every unknown key at any depth
is an error naming the file and the path, and a broken section stops the command instead of
switching a part off (a broken destinations: section used to leave the agent metering with
billing off, said only at INFO level)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import kubetally
from kubetally.config import KubetallyConfig, load_config
from kubetally.config.destinations import DestinationsConfig, LagoConfig
from kubetally.config.kubernetes import KubernetesConfig
from kubetally.config.pricing import PriceBookConfig
from kubetally.errors import ConfigError


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config([path])
    return caught.value.problems


def test_sections_come_back_typed(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text(
        "cluster: gpu-east\n"
        "kubernetes:\n  window: 5m\n"
        "pricing:\n  currency: EUR\n  prices: []\n"
        "destinations:\n  lago: {url: 'http://lago:3000', api_key_env: LAGO_KEY}\n"
    )
    config = load_config([path])
    assert isinstance(config.settings, KubetallyConfig)
    assert isinstance(config.kubernetes, KubernetesConfig) and config.kubernetes.window.total_seconds() == 300
    assert isinstance(config.pricing, PriceBookConfig) and config.pricing.currency == "EUR"
    assert isinstance(config.destinations, DestinationsConfig)
    (lago,) = config.destinations.destinations
    assert isinstance(lago, LagoConfig) and (lago.name, lago.url) == ("lago", "http://lago:3000")


def test_absent_sections_have_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text("cluster: gpu-east\n")
    config = load_config([path])
    assert config.kubernetes == KubernetesConfig()
    assert (config.pricing, config.destinations) == (None, None)


def test_unknown_sections_and_keys_name_file_and_path(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text(
        "server:\n  listen: ':8080'\n"  # no server part yet: an unknown section, not ignored
        "tenancy:\n  namespace_lable: x\n"  # was accepted (and never read) at the top level
        "kubernetes:\n  tenancy:\n    namespace_lable: x\n"
        "collection:\n  max_backfil: 2d\n"
    )
    assert problems_of(path) == [
        f"{path}: collection.max_backfil: unknown key",
        f"{path}: kubernetes: tenancy.namespace_lable: unknown key",
        f"{path}: server: unknown key",
        f"{path}: tenancy: unknown key (tenancy is configured under kubernetes.tenancy)",
    ]


def test_agent_stops_on_a_broken_destinations_section(tmp_path: Path) -> None:
    config = tmp_path / "kubetally.yaml"
    config.write_text("cluster: c\ndestinations:\n  - {type: lago, api_key: inline-secret}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetally.cli.main",
            "agent",
            "--once",
            "-c",
            str(config),
            "--db",
            str(tmp_path / "l.db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # The package under test (this checkout), whatever the installed one points at.
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "PYTHONPATH": str(Path(kubetally.__file__).parents[1])},
    )
    assert done.returncode == 1
    # One line naming file and path; nothing metered, nothing "not available in this build".
    assert done.stderr.strip().splitlines() == [
        f"error: {config}: destinations: destinations[0].lago.api_key: unknown key"
    ]
    assert not (tmp_path / "l.db").exists()
