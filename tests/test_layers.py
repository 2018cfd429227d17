"""Imports only go down: each package of ``explorer`` imports only packages on lower floors.

The floors are the layers of ARCHITECTURE.md. Every import counts, including those inside
functions and under ``TYPE_CHECKING``: a type-only import up is still a dependency a reader
has to hold in their head. A new package must be given a floor here (the test says so).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "explorer"

# Bottom to top. Packages on one floor must not import each other either.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("tracking", "operators"),  # what a solve reports; the operator contract
    ("solvers",),
    ("problems", "models", "store"),  # where matrices and Hessians come from; where runs are kept
    ("runs", "distributed"),  # a solve as the app runs and keeps it; a solve across processes
    ("analysis",),
    ("teaching",),
    ("plots",),
    ("bench", "cli", "ui"),  # the tools, the command line and the app on top
)
FLOOR_OF = {package: level for level, names in enumerate(FLOORS) for package in names}


def _package_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else None  # None: explorer/__init__.py, explorer/__main__.py


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "explorer":
                names += [f"explorer.{alias.name}" for alias in node.names]
        found.update(name.split(".")[1] for name in names if name.startswith("explorer."))
    return found


def _sources() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py") if _package_of(path) is not None)


def test_every_package_has_a_floor() -> None:
    packages = {_package_of(path) for path in _sources()}
    missing = sorted(p for p in packages if p not in FLOOR_OF and (ROOT / p).is_dir())
    assert not missing, f"give {missing} a floor in tests/test_layers.py FLOORS (and a paragraph in ARCHITECTURE.md)"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_go_down(path: Path) -> None:
    package = _package_of(path)
    if package not in FLOOR_OF:
        pytest.skip(f"{package} is not a package")  # reported by test_every_package_has_a_floor
    upward = sorted(other for other in _imported_packages(path) - {package}
                    if other in FLOOR_OF and FLOOR_OF[other] >= FLOOR_OF[package])
    assert not upward, (f"{path.relative_to(ROOT.parent)} (floor {FLOOR_OF[package]}: {package}) imports "
                        f"{upward}, which are not below it; move the shared piece down or the importer up")


def test_only_ui_imports_streamlit() -> None:
    offenders = []
    for path in _sources():
        if _package_of(path) == "ui":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "streamlit" for name in names):
                offenders.append(str(path.relative_to(ROOT.parent)))
    assert not offenders, f"only explorer/ui may import streamlit: {offenders}"
