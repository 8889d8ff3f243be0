"""Configuration loading: the seed ConfigMaps load unchanged, and every bad input gets a message
that names the file, the item and the field."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kubetally.config import Aggregation, load_config
from kubetally.errors import ConfigError
from kubetally.periods import PeriodKind

SEEDS = Path(__file__).resolve().parent.parent / "data" / "seeds"
COLLECTION = SEEDS / "alauda-collection-configmap.yaml"
DISPLAY = SEEDS / "alauda-display-configmap.yaml"

GOOD_ITEM = """
- kind: Vgpu
  category: VgpuCore
  item: {item}
  period: Hourly
  usage:
    query: "sum by (deviceuuid, podnamespace) (rate(vgpu_core_usage_seconds_total{{}}[5m]))"
    step: 5m
    mappers:
      name: deviceuuid
      namespace: podnamespace
"""


def problems_of(*paths: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(paths)
    return caught.value.problems


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_configmaps_load_unchanged() -> None:
    config = load_config([COLLECTION, DISPLAY])
    assert [item.item for item in config.items] == ["VgpuCoreUsed", "VgpuMemoryUsed"]
    core = config.item("VgpuCoreUsed")
    assert (core.kind, core.category, core.period) == ("Vgpu", "VgpuCore", PeriodKind.hourly)
    assert core.usage.query == "sum by (deviceuuid, podnamespace) (rate(vgpu_core_usage_seconds_total{}[5m]))"
    assert core.usage.step == timedelta(minutes=5)
    assert (core.usage.mappers.name, core.usage.mappers.namespace) == ("deviceuuid", "podnamespace")
    assert (core.usage.mappers.cluster, core.usage.mappers.project) == ("", "")
    assert core.labels is not None and core.labels.query == "vgpu_core_labels{}"
    assert core.aggregation is Aggregation.sum  # the Alauda default
    memory = config.display_for("VgpuMemoryUsed")
    assert memory is not None
    assert (memory.category.name, memory.method.name, memory.divisor) == ("VgpuMemory", "Used", Decimal(1073741824))
    assert memory.category.displayname.zh == "Vgpu 显存"
    assert config.origins == {
        "VgpuCoreUsed": f"{COLLECTION} (ConfigMap slark-agent-project-config-vgpu)",
        "VgpuMemoryUsed": f"{COLLECTION} (ConfigMap slark-agent-project-config-vgpu)",
    }
    assert config.warnings == []


def test_the_collection_configmap_alone_loads_with_a_warning() -> None:
    config = load_config([COLLECTION])
    assert len(config.items) == 2
    assert config.warnings == ["no display config loaded: items show raw units (divisor 1)"]


def test_missing_usage_query(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "items.yaml",
        GOOD_ITEM.format(item="A").replace(
            '    query: "sum by (deviceuuid, podnamespace) (rate(vgpu_core_usage_seconds_total{}[5m]))"\n', ""
        ),
    )
    assert problems_of(path) == [f"{path}: item 'A': usage.query: required field is missing"]


def test_step_that_does_not_divide_the_period(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", GOOD_ITEM.format(item="A").replace("step: 5m", "step: 7m"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: item 'A': ")
    assert "usage.step 420s does not divide the hourly period (3600s) into whole steps" in problem


def test_category_without_display_entry(tmp_path: Path) -> None:
    items = write(tmp_path, "items.yaml", GOOD_ITEM.format(item="VgpuCoreUsed") + GOOD_ITEM.format(item="Orphan"))
    assert problems_of(items, DISPLAY) == [
        f"{items}: item 'Orphan': category: no display entry has a method with item 'Orphan' "
        "(expected under display item 'VgpuCore')"
    ]


def test_duplicate_item(tmp_path: Path) -> None:
    first = write(tmp_path, "first.yaml", GOOD_ITEM.format(item="A"))
    second = write(tmp_path, "second.yaml", GOOD_ITEM.format(item="A"))
    assert problems_of(first, second) == [f"{second}: item 'A': item: duplicate (already defined in {first})"]


def test_unknown_keys(tmp_path: Path) -> None:
    text = GOOD_ITEM.format(item="A").replace("    step: 5m\n", "    step: 5m\n    stpe: 1m\n")
    path = write(tmp_path, "items.yaml", text.replace("  period: Hourly\n", "  period: Hourly\n  prise: 3\n"))
    assert sorted(problems_of(path)) == [
        f"{path}: item 'A': prise: unknown key",
        f"{path}: item 'A': usage.stpe: unknown key",
    ]


def test_unknown_settings_key_and_preset(tmp_path: Path) -> None:
    path = write(tmp_path, "kubetally.yaml", "collection:\n  presets: [nope]\n  settle: 2m\n")
    problems = problems_of(path)
    assert f"{path}: collection.settle: unknown key" in problems


def test_unknown_preset(tmp_path: Path) -> None:
    path = write(tmp_path, "kubetally.yaml", "collection:\n  presets: [nope]\n")
    assert problems_of(path) == [
        "collection.presets: unknown preset 'nope' (known: compute, dcgm, hami, network, storage)"
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "items.yaml",
        GOOD_ITEM.format(item="A").replace("step: 5m", "step: 7m")
        + GOOD_ITEM.format(item="B").replace("period: Hourly", "period: Weekly"),
    )
    problems = problems_of(path)
    assert len(problems) == 2
    assert problems[1].startswith(f"{path}: item 'B': period: period must be Hourly or Daily")


def test_presets_and_configmaps_combine(tmp_path: Path) -> None:
    settings = write(tmp_path, "kubetally.yaml", "collection:\n  presets: [dcgm, storage]\n")
    config = load_config([settings, COLLECTION, DISPLAY])
    assert [i.item for i in config.items] == [
        "GpuAllocation",
        "GpuUtilization",
        "StorageRequest",
        "VgpuCoreUsed",
        "VgpuMemoryUsed",
    ]
    assert config.origins["GpuAllocation"] == "preset dcgm"
