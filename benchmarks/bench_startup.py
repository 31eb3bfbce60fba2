"""Start-up time: from launching the process to the main window's first paint.

Each run is a fresh ``python -c`` process (cold imports, a new empty LLAMADESK_HOME) that
imports llamadesk.app, creates the QApplication and the window, shows it and prints the
elapsed time when the window is first exposed. The clock starts just before the process
is launched, so interpreter start-up is included. Prints the median of 5 runs.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 1.5

CHILD = r"""
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

import llamadesk.app as app_module

app = QApplication([])
window = app_module.create_main_window(Path(HOME))


class FirstPaint(QObject):
    def eventFilter(self, watched, event):
        if event.type() in (QEvent.Type.Expose, QEvent.Type.Paint) and not getattr(self, "done", False):
            self.done = True
            print(f"ELAPSED {time.time() - START:.4f} {time.process_time():.4f}", flush=True)
            QTimer.singleShot(0, window.close)
        return False


spy = FirstPaint()
window.installEventFilter(spy)
window.show()
window.windowHandle().installEventFilter(spy)
app.exec()
"""


def run_once(home: str | None = None) -> tuple[float, float]:
    """(wall seconds from launch to first paint, CPU seconds the process used until then), with a
    new empty LLAMADESK_HOME or the given one."""
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-") as scratch:
        home = home or scratch
        code = f"HOME = {home!r}\nSTART = {time.time()!r}\n" + CHILD
        env = dict(os.environ, LLAMADESK_HOME=home)
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True
        ).stdout
    for line in out.splitlines():
        if line.startswith("ELAPSED "):
            _, wall, cpu = line.split()
            return float(wall), float(cpu)
    raise RuntimeError(f"the child printed no timing: {out!r}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times: list[float] = []
    cpu_times: list[float] = []
    for number in range(args.runs):
        elapsed, cpu = run_once()
        times.append(elapsed)
        cpu_times.append(cpu)
        print(f"run {number + 1}: {elapsed:.3f} s to first paint ({cpu:.3f} s CPU)")
    median = statistics.median(times)
    verdict = "OK" if median <= TARGET_S else "SLOWER THAN TARGET"
    print(f"median of {len(times)}: {median:.3f} s (target <= {TARGET_S} s): {verdict}")
    # On a busy machine wall time includes waiting for a core; CPU time does not.
    print(f"median CPU time: {statistics.median(cpu_times):.3f} s; load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
