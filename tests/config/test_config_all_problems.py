"""One run reports every problem of a config: an item that fails field validation still takes
part in the step-vs-period, duplicate and display cross-checks (they used to appear only once
the other problems were fixed, one stage at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubetally.cli.main import app
from kubetally.config import load_config
from kubetally.errors import ConfigError

#: Six kinds of problems in one file: a missing ``usage.query`` and a 7m step on an hourly item
#: (the same item, so pydantic never runs the step check), a duplicate ``item`` that also has a bad
#: ``aggregation``, and an item with an unknown key whose category has no display entry.
ALL_PROBLEMS = """\
items:
  - kind: Vgpu
    category: VgpuCore
    item: A
    usage:
      step: 7m
      mappers: {name: deviceuuid}
  - kind: Vgpu
    category: VgpuCore
    item: A
    aggregation: avg
    usage:
      query: sum(vgpu_core)
      step: 5m
      mappers: {name: deviceuuid}
  - kind: Net
    category: Network
    item: Egress
    colour: blue
    usage:
      query: sum(egress_bytes)
      step: 5m
      mappers: {name: pod}
display:
  - name: VgpuCore
    methods:
      - {name: Usage, item: A}
"""


def expected(path: Path) -> list[str]:
    return [
        f"{path}: item 'A': usage.query: required field is missing",
        f"{path}: item 'A': usage.step 420s does not divide the hourly period (3600s) into whole steps",
        f"{path}: item 'A': aggregation: Input should be 'sum' or 'integral'",
        f"{path}: item 'A': item: duplicate (already defined in {path})",
        f"{path}: item 'Egress': colour: unknown key",
        f"{path}: item 'Egress': category: no display entry has a method with item 'Egress' "
        "(expected under display item 'Network')",
    ]


def problems_of(*paths: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(paths)
    return caught.value.problems


def test_every_kind_of_problem_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text(ALL_PROBLEMS, encoding="utf-8")
    assert problems_of(path) == expected(path)


def test_validate_exits_one_and_prints_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text(ALL_PROBLEMS, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"✗ {problem}" for problem in expected(path)] + ["6 problem(s) found"]


def test_step_of_an_otherwise_valid_item_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text(
        "items:\n"
        "  - {kind: Vgpu, category: VgpuCore, item: A, usage: {query: q, step: 7m, mappers: {name: d}}}\n"
        "display:\n"
        "  - {name: VgpuCore, methods: [{name: Usage, item: A}]}\n",
        encoding="utf-8",
    )
    assert problems_of(path) == [
        f"{path}: item 'A': usage.step 420s does not divide the hourly period (3600s) into whole steps",
    ]


def test_an_invalid_display_entry_still_counts_for_the_cross_check(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text(
        "items:\n"
        "  - {kind: Vgpu, category: VgpuCore, item: A, usage: {query: q, step: 5m, mappers: {name: d}}}\n"
        "  - {kind: Vgpu, category: Wrong, item: B, usage: {query: q, step: 5m, mappers: {name: d}}}\n"
        "display:\n"
        "  - name: VgpuCore\n"
        "    colour: blue\n"
        "    methods:\n"
        "      - {name: Usage, item: A}\n"
        "      - {name: Other, item: B}\n",
        encoding="utf-8",
    )
    assert problems_of(path) == [
        f"{path}: name 'VgpuCore': colour: unknown key",
        f"{path}: item 'B': category: is 'Wrong' but the display method for this item is under 'VgpuCore'",
    ]


def test_a_bad_settings_section_does_not_hide_the_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "kubetally.yaml"
    path.write_text(
        "cluster: c\n"
        "collection:\n  settle_delay: 5 minutes\n"
        "kubernetes:\n  tick_interval: soon\n"
        "destinations:\n  - {type: file, path: x.jsonl, timeout: never}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config([path])
    hint = "(expected e.g. 30s, 5m, 1h, 7d)"
    assert caught.value.problems == [
        f"{path}: collection.settle_delay: not a duration: '5 minutes' {hint}",
        f"{path}: kubernetes: tick_interval: not a duration: 'soon' {hint}",
        f"{path}: destinations: destinations[0].file.timeout: not a duration: 'never' {hint}",
    ]
