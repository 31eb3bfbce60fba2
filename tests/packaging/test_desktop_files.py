"""Linux desktop integration: .desktop and AppStream files validate, icons render, install.sh works."""

from __future__ import annotations

import configparser
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
APP_ID = "io.github.llamadesk.LlamaDesk"
DESKTOP_FILE = LINUX / f"{APP_ID}.desktop"
METAINFO_FILE = LINUX / f"{APP_ID}.metainfo.xml"
SVG = ROOT / "resources" / "icons" / "llamadesk.svg"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _desktop_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


@pytest.fixture(scope="module")
def rendered_icons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs the real render step (packaging/render_icons.py) into a fresh folder."""
    out = tmp_path_factory.mktemp("icons")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "render_icons.py"), str(SVG), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_icons_rendered_in_every_size(rendered_icons: Path) -> None:
    for size in SIZES:
        png = rendered_icons / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert png.is_file(), f"missing {size}px icon"
        assert _png_size(png) == (size, size)
    scalable = rendered_icons / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    assert scalable.read_bytes() == SVG.read_bytes()


def test_windows_and_macos_icons_are_well_formed(rendered_icons: Path) -> None:
    ico = (rendered_icons / "llamadesk.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind) == (0, 1)
    assert count == 7
    icns = (rendered_icons / "llamadesk.icns").read_bytes()
    assert icns[:4] == b"icns"
    assert struct.unpack(">I", icns[4:8])[0] == len(icns)
    assert b"ic10" in icns  # the 1024px (512@2x) image macOS uses for Retina displays


def test_desktop_file_matches_app_id_and_icon() -> None:
    entry = _desktop_entry(DESKTOP_FILE)
    assert entry["Type"] == "Application"
    assert entry["Icon"] == APP_ID
    assert entry["Exec"].split()[0] == "llamadesk"
    assert entry["Terminal"] == "false"
    app_py = (ROOT / "desktop" / "llamadesk" / "app.py").read_text(encoding="utf-8")
    assert APP_ID in app_py, "the app's desktop file name must match the .desktop file"


def test_metainfo_names_the_desktop_file() -> None:
    root = ET.parse(METAINFO_FILE).getroot()
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == DESKTOP_FILE.name
    versions = [r.get("version") for r in root.iter("release")]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{versions[0]}"' in pyproject, "the newest <release> must be the package version"


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None, reason="desktop-file-utils is not installed"
)
def test_desktop_file_validates() -> None:
    result = subprocess.run(
        ["desktop-file-validate", str(DESKTOP_FILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream (appstreamcli) is not installed")
def test_metainfo_validates() -> None:
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(METAINFO_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_script_installs_desktop_files(rendered_icons: Path, tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    (stage / "share" / "applications").mkdir(parents=True)
    (stage / "share" / "metainfo").mkdir(parents=True)
    shutil.copy(DESKTOP_FILE, stage / "share" / "applications")
    shutil.copy(METAINFO_FILE, stage / "share" / "metainfo")
    shutil.copytree(rendered_icons / "hicolor", stage / "share" / "icons" / "hicolor")
    home, data = tmp_path / "userhome", tmp_path / "data"
    home.mkdir()
    program = tmp_path / "bin dir" / "llamadesk"
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(data)}

    result = subprocess.run(
        ["sh", str(LINUX / "install.sh"), "--desktop-only", "--from", str(stage), "--exec", str(program)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    installed = data / "applications" / DESKTOP_FILE.name
    entry = _desktop_entry(installed)
    assert entry["Exec"] == f'"{program}"'
    assert entry["TryExec"] == str(program)
    assert (data / "metainfo" / METAINFO_FILE.name).is_file()
    for size in SIZES:
        assert (data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png").is_file()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(installed)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout

    removed = subprocess.run(
        ["sh", str(LINUX / "install.sh"), "--uninstall"], capture_output=True, text=True, env=env, check=False
    )
    assert removed.returncode == 0, removed.stderr
    assert not installed.exists()
    assert not list((data / "icons").rglob(f"{APP_ID}.*"))
