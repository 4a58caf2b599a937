"""What 'pip install .' alone needs: every third-party module the ironserve package imports is a declared dependency
(rich was imported by the progress display and not declared, so a plain install crashed 'ironserve run' on a
terminal), and the project's metadata is of the form current setuptools reads without a deprecation warning."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _imported_modules() -> set[str]:
    modules = set()
    for source in (REPO / "ironserve").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"ironserve"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_module_the_package_imports_is_a_declared_dependency():
    declared = {
        _canonical(re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0]) for requirement in PROJECT["dependencies"]
    }
    distributions = packages_distributions()
    undeclared = {
        module: distributions.get(module, ["(not installed)"])
        for module in _imported_modules()
        if not {_canonical(d) for d in distributions.get(module, [])} & declared
    }
    assert undeclared == {}


def test_the_license_is_an_spdx_expression():
    # A {text = ...} table is deprecated in setuptools 77 and warned about on every install.
    assert PROJECT["license"] == "Apache-2.0"
