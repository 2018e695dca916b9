"""The package's layering: plumbing below every consumer, figures in one place."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import salmap

PACKAGE = Path(salmap.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_metrics_masks_and_explainers_do_not_load_matplotlib() -> None:
    code = (
        "import sys, salmap.metrics, salmap.masks, salmap.explainers, salmap.registry\n"
        "sys.exit(1 if any(name.startswith('matplotlib') for name in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_metrics_and_models_do_not_import_the_explainers() -> None:
    for folder in ("metrics", "models"):
        for path in (PACKAGE / folder).glob("*.py"):
            imported = _imports(path)
            assert not any(name.startswith("salmap.explainers") for name in imported), path


def test_only_the_figures_package_imports_matplotlib_at_module_level() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "figures" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        names = {alias.name for node in top if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module or "" for node in top if isinstance(node, ast.ImportFrom)}
        assert not any(name.startswith("matplotlib") for name in names), path
