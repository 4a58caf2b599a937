"""What 'pip install .' alone needs: every third-party module the ironserve package imports is a declared dependency
(rich was imported by the progress display and not declared, so a plain install crashed 'ironserve run' on a
terminal), and the project's metadata is of the form current setuptools reads without a deprecation warning."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


OUR_PACKAGES = {"ironserve", "ironserve_target"}
TARGET_PACKAGE = REPO / "module_utils" / "ironserve_target"


def _imported_modules(folder: Path = REPO / "ironserve") -> set[str]:
    modules = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - OUR_PACKAGES


def test_the_target_side_package_is_stdlib_only_and_installed_from_module_utils():
    # Ansible ships module_utils/ironserve_target to every host: nothing else may be needed there, not even the
    # controller's package (the package imports itself relatively).
    imported = set()
    for source in TARGET_PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == set()
    # The controller imports the very files the targets get (no copy, no link).
    import ironserve_target.probe

    assert Path(ironserve_target.probe.__file__).resolve() == TARGET_PACKAGE / "probe" / "__init__.py"
    tracked = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert [line for line in tracked.splitlines() if line.startswith("120000 ")] == []  # no symlink in the tree


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
