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

from lab_ansible import ad_hoc_with_bench_strategy

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


OUR_PACKAGES = {"ironserve", "ironserve_target"}
TARGET_PACKAGE = REPO / "module_utils" / "ironserve_target"


def _top_level_imports(folder: Path) -> set[str]:
    """Every top-level package the Python files under ``folder`` import absolutely."""
    modules = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def _imported_modules() -> set[str]:
    return _top_level_imports(REPO / "ironserve") - set(sys.stdlib_module_names) - OUR_PACKAGES


def test_the_target_side_package_is_stdlib_only_and_installed_from_module_utils():
    # Ansible ships module_utils/ironserve_target to every host: nothing else may be needed there, not even the
    # controller's package (the package imports itself relatively).
    assert _top_level_imports(TARGET_PACKAGE) - set(sys.stdlib_module_names) == set()
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


def _target_module(dotted: str) -> Path:
    path = TARGET_PACKAGE.parent.joinpath(*dotted.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _absolute_and_relative(source: Path, dotted: str) -> tuple[set[str], set[str]]:
    """The ironserve_target modules ``source`` names absolutely (as ansible.module_utils...) and relatively."""
    package = dotted if source.name == "__init__.py" else dotted.rpartition(".")[0]
    absolute, relative = set(), set()
    for node in ast.walk(ast.parse(source.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0 and (node.module or "").startswith("ansible.module_utils.ironserve_target"):
            base = node.module.removeprefix("ansible.module_utils.")
            absolute |= {f"{base}.{a.name}" for a in node.names if _target_module(f"{base}.{a.name}").exists()}
            absolute.add(base)
        elif node.level > 0:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
            base = f"{base}.{node.module}" if node.module else base
            relative |= {f"{base}.{a.name}" for a in node.names if _target_module(f"{base}.{a.name}").exists()}
            if node.module:
                relative.add(base)
    return absolute, relative


def test_each_module_names_every_target_module_it_runs_so_mitogen_ships_them():
    # Mitogen ships the module_utils a module names absolutely and follows no relative import: a module that runs
    # one only through the package's relative imports fails under it ("No module named ...probe.disks").
    for module in sorted((REPO / "library").glob("*.py")):
        named, _ = _absolute_and_relative(module, "library")
        queue, reached = list(named), set()
        while queue:
            dotted = queue.pop()
            if dotted in reached:
                continue
            reached.add(dotted)
            more_absolute, more_relative = _absolute_and_relative(_target_module(dotted), dotted)
            queue += [*more_absolute, *more_relative]
        assert reached - named == set(), module.name


def test_the_probe_runs_under_mitogen():
    result = ad_hoc_with_bench_strategy("-m", "ironserve_probe", "-a", "sections=disks,host fact=false")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "localhost | SUCCESS" in result.stdout


def test_the_gpu_machine_checks_import_with_the_standard_library_alone():
    # tools/gpu-device-check.sh and gpu-engine-check.py run on a bare GPU machine's python3: no site-packages.
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/module_utils']; "
        "from ironserve import driver_policy, engines, planner; from ironserve_target import gpu_ids, probe"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(REPO)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
