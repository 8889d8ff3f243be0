"""``kubetally validate FILE…``: exit 0 when valid, 1 with every located problem otherwise — including
PromQL the real Prometheus rejects (``--prometheus``)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from kubetally.cli.main import app
from kubetally.config import load_config
from kubetally.sources.prometheus.check import check_queries
from kubetally.testing.net import free_port

SEEDS = Path(__file__).resolve().parent.parent / "data" / "seeds"
COLLECTION = SEEDS / "alauda-collection-configmap.yaml"
DISPLAY = SEEDS / "alauda-display-configmap.yaml"

runner = CliRunner()


def validate(*args: str | Path):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["validate", *map(str, args)], env={"COLUMNS": "300"})


def test_valid_files_exit_zero() -> None:
    result = validate(COLLECTION, DISPLAY)
    assert result.exit_code == 0, result.output
    assert "2 file(s): 2 item(s), 2 display item(s)" in result.output


def test_invalid_files_exit_one_and_list_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        COLLECTION.read_text()
        .replace("step: 5m", "step: 7m")
        .replace("      item: VgpuMemoryUsed", "      item: VgpuMemoryUsed\n      colour: blue")
    )
    result = validate(bad, DISPLAY)
    assert result.exit_code == 1
    output = result.output.replace("\n", "")
    where = f"{bad} (ConfigMap slark-agent-project-config-vgpu)"
    assert f"{where}: item 'VgpuCoreUsed': " in output and "usage.step 420s does not divide" in output
    assert f"{where}: item 'VgpuMemoryUsed': colour: unknown key" in output
    # VgpuMemoryUsed's step is reported in the same run as its unknown key, although pydantic
    # runs that whole-item check only once the item's fields are valid.
    assert f"{where}: item 'VgpuMemoryUsed': usage.step 420s does not divide" in output
    assert "3 problem(s) found" in output


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("items: [\n")
    result = validate(tmp_path / "missing.yaml", broken)
    assert result.exit_code == 1
    assert f"{tmp_path / 'missing.yaml'}: cannot read" in result.output.replace("\n", "")
    assert f"{broken}: not valid YAML" in result.output.replace("\n", "")


def test_bad_promql_is_reported_by_the_server(prometheus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        COLLECTION.read_text().replace(
            "(avg_over_time(vgpu_memory_usage_bytes{}[5m]))", "(avg_over_time(vgpu_memory_usage_bytes{}[5m])"
        )
    )
    config = load_config([bad, DISPLAY])  # loads: PromQL is only checked by a server
    problems = check_queries(config, prometheus.url)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{bad} (ConfigMap slark-agent-project-config-vgpu): item 'VgpuMemoryUsed': usage.query: "
        "Prometheus rejected the query: HTTP 400 bad_data: "
    )
    result = validate("--prometheus", prometheus.url, bad, DISPLAY)
    assert result.exit_code == 1
    assert "item 'VgpuMemoryUsed': usage.query: Prometheus rejected the query" in result.output.replace("\n", "")
    assert validate("--prometheus", prometheus.url, COLLECTION, DISPLAY).exit_code == 0


def test_a_query_that_is_not_an_instant_vector(prometheus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "items.yaml"
    path.write_text(
        "- kind: K\n  category: C\n  item: Scalar\n  usage:\n    query: 'scalar(sum(test_zero))'\n"
        "    step: 5m\n    mappers: {name: pod}\n"
    )
    assert check_queries(load_config([path]), prometheus.url) == [
        f"{path}: item 'Scalar': usage.query: Prometheus rejected the query: the query returns a scalar, "
        "not an instant vector of series"
    ]


def test_unreachable_server_is_one_problem() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    problems = check_queries(load_config([COLLECTION, DISPLAY]), url)
    assert len(problems) == 1 and problems[0].startswith(f"Prometheus {url}: ")
    assert "unreachable" in problems[0]
