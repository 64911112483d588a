"""Imports run one way (DESIGN.md "Layout and layering"): cli → report → experiment → datasets →
core. The test reads every module's imports, those inside functions included, with `ast`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Layer of each package folder (lower imports nothing higher); the core is cascbench/*.py,
#: cascbench/models/ and methods/ (installed as cascbench.methods).
LAYERS = {"core": 0, "datasets": 1, "experiment": 2, "report": 3, "cli": 4}
#: Top-level cascbench subpackages that are a layer above the core.
UPPER = {"datasets", "experiment", "report", "cli"}


def layer_of_file(path: Path) -> str:
    relative = path.relative_to(ROOT).parts
    if relative[0] == "datasets":
        return "datasets"
    if relative == ("cascbench", "__main__.py"):
        return "cli"  # `python -m cascbench` is the command line
    if relative[0] == "cascbench" and len(relative) > 2 and relative[1] in UPPER:
        return relative[1]
    return "core"  # cascbench/*.py, cascbench/models/, cascbench/presets/, methods/


def layer_of_module(name: str) -> str | None:
    """The layer a `cascbench...` module belongs to (None for anything outside cascbench)."""
    parts = name.split(".")
    if parts[0] != "cascbench":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in UPPER else "core"


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`; relative ones resolved
    against `package`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "cascbench":  # `from cascbench import experiment` imports a layer too
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def violations(path: Path, source: str) -> list[str]:
    """'file:line imports module (layer X may not import layer Y)' for each upward import."""
    own = layer_of_file(path)
    package = _package_of(path)
    problems = []
    for line, module in imported_modules(source, package):
        target = layer_of_module(module)
        if target is not None and LAYERS[target] > LAYERS[own]:
            where = path.relative_to(ROOT)
            problems.append(f"{where}:{line} imports {module} ({own} may not import {target})")
    return problems


def _package_of(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("").parts
    if relative[0] in ("datasets", "methods"):
        relative = ("cascbench", *relative)
    return ".".join(relative[:-1])


def project_modules() -> list[Path]:
    folders = [ROOT / "cascbench", ROOT / "datasets", ROOT / "methods"]
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def test_every_import_points_down_the_layers():
    problems = [v for path in project_modules() for v in violations(path, path.read_text())]
    assert problems == []


@pytest.mark.parametrize(
    ("file", "source"),
    [
        ("cascbench/train.py", "from cascbench.experiment.config import RunConfig\n"),
        ("cascbench/metrics.py", "def f():\n    import cascbench.report.stats\n"),
        ("cascbench/models/din.py", "from cascbench import datasets\n"),
        ("methods/lcron.py", "from cascbench.cli import app\n"),
        ("datasets/cache.py", "from cascbench.experiment.store import atomic_write_json\n"),
        ("datasets/synthetic/world.py", "from ...experiment import config\n"),
        ("cascbench/experiment/grid.py", "from cascbench.report.build import build\n"),
        ("cascbench/report/build.py", "from cascbench.cli._common import console\n"),
    ],
)
def test_an_upward_import_is_caught_and_named(file, source):
    (problem,) = violations(ROOT / file, source)
    assert problem.startswith(f"{file}:")
    assert "may not import" in problem


@pytest.mark.parametrize(
    ("file", "source"),
    [
        ("cascbench/train.py", "from cascbench.metrics import evaluate\n"),
        ("datasets/cache.py", "from cascbench.io import atomic_write_json\n"),
        ("cascbench/experiment/plan.py", "from cascbench.datasets import check_dataset\n"),
        ("cascbench/cli/run.py", "from cascbench.report.build import build\n"),
        ("methods/lcron.py", "from cascbench.methods._relaxed import x\n"),
    ],
)
def test_downward_imports_pass(file, source):
    assert violations(ROOT / file, source) == []
