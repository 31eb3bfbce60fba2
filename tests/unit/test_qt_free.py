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
    """Every core module imports (a broken one fails here, it is not skipped) and none loads Qt."""
    code = (
        "import sys, importlib, pkgutil, llamadesk\n"
        "mods = ['llamadesk.settings', 'llamadesk.paths', 'llamadesk.safejson']\n"
        "for pkg in ('llamadesk.chat', 'llamadesk.hub', 'llamadesk.engine', 'llamadesk.cli',\n"
        "            'llamadesk.docs', 'llamadesk.remote', 'llamadesk.server'):\n"
        "    p = importlib.import_module(pkg)\n"
        "    mods += [pkg]\n"
        "    mods += [m.name for m in pkgutil.walk_packages(p.__path__, pkg + '.')]\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        "leaked = sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6')))\n"
        "print(len(mods), leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = int(result.stdout.split()[0])
    assert checked >= 25  # the walk reached the sub-packages, not just their names


def test_a_local_chat_does_not_import_the_hub_stack_or_qt() -> None:
    """`llamadesk chat` and `models list` import neither huggingface_hub nor Qt (start-up cost)."""
    code = (
        "import sys\n"
        "import llamadesk.cli, llamadesk.cli.chat, llamadesk.cli.models, llamadesk.engine.service\n"
        "from llamadesk.cli import build_parser\n"
        "build_parser().parse_args(['chat', 'hi'])\n"
        "heavy = sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('huggingface_hub', 'PySide6', 'requests'))\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
