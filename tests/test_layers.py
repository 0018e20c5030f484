"""The layer contracts in pyproject.toml ([tool.importlinter]) hold, and they can fail: a
wrong-way import added to a copy of the tree breaks the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("ownercare", "api", "worker", "simulators", "storage", "diagnostics", "ota",
            "ingest", "config", "care", "vocab")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The tree first on the path, so the copy is analysed, not the installed checkout.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def test_the_tree_keeps_every_layer_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "wrong_import", "contract"), [
    # a detector reaching up into the database layer
    ("diagnostics/dtc.py", "import storage.store", "Layers point one way"),
    # the settings reaching up into the command line
    ("config/settings.py", "import ownercare.cli", "Layers point one way"),
    # two sibling services that must not know each other
    ("worker/checkpoint.py", "import api.app", "Layers point one way"),
    # pure care logic pulling in the web framework
    ("care/casework.py", "import fastapi", "needs no web, database or stream framework"),
    # a cycle inside one package
    ("storage/cursor.py", "import storage.store", "No import cycle"),
])
def test_a_wrong_way_import_breaks_a_contract(tree_copy: Path, module: str, wrong_import: str,
                                              contract: str) -> None:
    path = tree_copy / module
    original = path.read_text()
    path.write_text(original + f"\n{wrong_import}  # noqa\n")
    try:
        result = lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    # The report wraps long contract names: compare with whitespace collapsed.
    broken = " ".join(result.stdout.split("Broken contracts", 1)[-1].split())
    assert contract in broken, result.stdout
