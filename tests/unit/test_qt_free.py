"""engine/, chat/, hub/, settings, paths and cli must not import Qt: they run headless."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "desktop" / "llamadesk"
QT_ALLOWED = {"ui", "app.py"}


def _qt_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [n for n in names if n.split(".")[0] in {"PySide6", "PyQt5", "PyQt6", "shiboken6"}]
    return found


def test_core_modules_have_no_qt_imports() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0]
        if top in QT_ALLOWED:
            continue
        if imports := _qt_imports(path):
            offenders[str(path.relative_to(PACKAGE))] = imports
    assert offenders == {}


def test_core_imports_without_loading_qt() -> None:
    code = (
        "import sys, importlib, pkgutil, llamadesk\n"
        "mods = ['llamadesk.cli', 'llamadesk.settings', 'llamadesk.paths', 'llamadesk.engine']\n"
        "for pkg in ('llamadesk.chat', 'llamadesk.hub'):\n"
        "    try:\n"
        "        p = importlib.import_module(pkg)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    mods += [pkg + '.' + m.name for m in pkgutil.iter_modules(p.__path__)]\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        "leaked = sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6')))\n"
        "print(leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
