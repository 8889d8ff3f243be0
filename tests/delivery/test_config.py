"""The destinations: section, one-off flags and vBilling's environment variables."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kubetally.config import load_config
from kubetally.config.destinations import (
    DestinationsConfig,
    FileConfig,
    LagoConfig,
    StripeConfig,
    destinations_from_env,
    one_off_config,
)
from kubetally.delivery.destinations import build_destination
from kubetally.delivery.destinations.base import metric_code, resolve_secret
from kubetally.delivery.destinations.lago import lago_api_url
from kubetally.errors import ConfigError


def test_list_and_mapping_shapes(tmp_path: Path) -> None:
    as_list = DestinationsConfig.model_validate(
        [
            {"type": "lago", "url": "http://lago:3000", "timeout": "10s", "offboard_grace": "2h"},
            {"name": "audit", "type": "file", "path": str(tmp_path / "e.jsonl")},
        ]
    )
    lago, audit = as_list.destinations
    assert isinstance(lago, LagoConfig) and lago.name == "lago"
    assert lago.timeout == timedelta(seconds=10) and lago.offboard_grace == timedelta(hours=2)
    assert isinstance(audit, FileConfig) and audit.name == "audit"
    as_map = DestinationsConfig.model_validate(
        {
            "stripe": {"scale": "1000", "item_scale": {"gpu_hours": "3600"}},
            "backup": {"type": "file", "path": "x.jsonl"},
        }
    )
    stripe, backup = as_map.destinations
    assert isinstance(stripe, StripeConfig)
    assert stripe.scale == Decimal(1000) and stripe.item_scale == {"gpu_hours": Decimal(3600)}
    assert backup.name == "backup" and backup.kind == "file"


def test_problems_name_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "kubetally.yaml"
    config.write_text(
        "destinations:\n"
        "  - type: lago\n"
        "    api_key: sk-inline-secret\n"
        "  - type: webhook\n"
        "  - type: lago\n"
        "    timeout: soon\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config([config])
    problems = err.value.problems
    assert f"{config}: destinations: destinations[0].lago.api_key: unknown key" in problems
    assert f"{config}: destinations: destinations[1].webhook.url: required field is missing" in problems
    assert any(p.startswith(f"{config}: destinations: destinations[2].lago.timeout: not a duration") for p in problems)
    assert "sk-inline-secret" not in str(err.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="destination name 'lago' is used twice"):
        DestinationsConfig.model_validate([{"type": "lago"}, {"type": "lago"}])


def test_loaded_config_exposes_the_validated_section(tmp_path: Path) -> None:
    config = tmp_path / "kubetally.yaml"
    config.write_text("destinations:\n  lago:\n    url: http://lago:3000\n    plan_code: gpu\n")
    section = load_config([config]).destinations
    assert isinstance(section, DestinationsConfig)
    assert section.get("lago").plan_code == "gpu"  # type: ignore[attr-defined]


def test_vbilling_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGO_API_URL", "http://lago-api.lago-system:3000")
    monkeypatch.setenv("DEFAULT_PLAN_CODE", "gpu-plan")
    monkeypatch.setenv("BILLING_CURRENCY", "EUR")
    lago = LagoConfig(type="lago")
    assert (lago.url, lago.plan_code, lago.currency, lago.api_key_env) == (
        "http://lago-api.lago-system:3000",
        "gpu-plan",
        "EUR",
        "LAGO_API_KEY",
    )
    assert lago_api_url(lago.url) == "http://lago-api.lago-system:3000/api/v1"
    assert lago_api_url("http://h/api/v1/") == "http://h/api/v1"


def test_destinations_from_env() -> None:
    assert destinations_from_env({}) is None
    found = destinations_from_env({"LAGO_API_KEY": "k", "BILLING_CURRENCY": "JPY"})
    assert found is not None
    [lago] = found.destinations
    assert (lago.url, lago.plan_code, lago.currency) == (  # type: ignore[attr-defined]
        "http://localhost:3000",
        "vcluster-standard",
        "JPY",
    )


def test_one_off_flags(tmp_path: Path) -> None:
    assert one_off_config("file", path=str(tmp_path / "x")).path == str(tmp_path / "x")  # type: ignore[attr-defined]
    stripe = one_off_config("stripe", url="http://127.0.0.1:9")
    assert (stripe.url, stripe.stream_url) == ("http://127.0.0.1:9", "http://127.0.0.1:9")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="--to file needs --path FILE"):
        one_off_config("file")
    with pytest.raises(ConfigError, match="--to webhook needs --url URL"):
        one_off_config("webhook")
    with pytest.raises(ConfigError, match="unknown destination 'kafka'"):
        one_off_config("kafka")


def test_secrets_come_from_env_or_file_and_are_never_shown(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert resolve_secret("d", "K", str(key_file), {"K": "from-env"}) == "from-file"
    assert resolve_secret("d", "K", None, {"K": "from-env"}) == "from-env"
    no_key = r"destination lago: no API key \(set the environment variable LAGO_API_KEY\)"
    with pytest.raises(ConfigError, match=no_key):
        build_destination(LagoConfig(type="lago"), {})
    with pytest.raises(ConfigError, match=r"api key file .*/missing: cannot read"):
        resolve_secret("d", None, str(tmp_path / "missing"), {})


def test_metric_codes_are_snake_case() -> None:
    assert metric_code("VgpuCoreUsed") == "vgpu_core_used"
    assert metric_code("gpu.hours") == "gpu_hours"
    assert metric_code("GPU hours", "kt_") == "kt_gpu_hours"


def test_urls_are_checked_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="must be an http:// or https:// URL, not 'lago:3000'"):
        DestinationsConfig.model_validate([{"type": "lago", "url": "lago:3000"}])
    assert (
        DestinationsConfig.model_validate([{"type": "webhook", "url": "https://h/x/"}]).destinations[0].url
        == "https://h/x"
    )  # type: ignore[attr-defined]
