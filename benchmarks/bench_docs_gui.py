"""The window stays responsive while documents are indexed: the longest stall of the GUI thread.

150 Word files (written with python-docx) and a 3.6 MB Markdown file are indexed twice, side by side
in one run, while a 5 ms timer ticks on the GUI thread:

1. the way the Documents panel does it: ``IndexJob`` (a separate indexing process);
2. for comparison, ``DocumentIndex.add`` on a plain thread of the app.

Prints the longest gap between ticks (the longest the window could not repaint) and the time each
took. Target: at most 50 ms with the panel's way.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_docs_gui.py [--docx 150]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "desktop"))

WORDS = [
    "model",
    "context",
    "window",
    "token",
    "prompt",
    "template",
    "quantization",
    "sampling",
    "temperature",
    "layer",
    "cache",
    "memory",
    "answer",
    "question",
    "document",
    "passage",
    "source",
    "citation",
    "index",
    "search",
    "vector",
]


def make_corpus(folder: Path, docx_files: int) -> list[Path]:
    import docx

    folder.mkdir(parents=True, exist_ok=True)
    for number in range(docx_files):
        document = docx.Document()
        for section in range(6):
            document.add_heading(f"Part {number}.{section}", level=2)
            for paragraph in range(5):
                words = [
                    WORDS[(number * 7 + section * 5 + paragraph * 3 + i) % len(WORDS)] for i in range(60)
                ]
                document.add_paragraph(" ".join(words) + ".")
        document.save(str(folder / f"report-{number:03}.docx"))
    lines = []
    size = 0
    index = 0
    while size < 3_600_000:
        if index % 20 == 0:
            line = f"\n## Chapter {index // 20}\n\n"
        else:
            line = " ".join(WORDS[(index + i) % len(WORDS)] for i in range(40)) + ".\n\n"
        lines.append(line)
        size += len(line)
        index += 1
    (folder / "handbook.md").write_text("".join(lines), encoding="utf-8")
    return [folder]


def measure(app: object, start: object, finished: threading.Event) -> tuple[float, float]:
    """Longest gap between 5 ms ticks while ``start()``'s work runs, and its wall time (seconds)."""
    from PySide6.QtCore import QCoreApplication, QTimer

    last = time.perf_counter()
    longest = 0.0

    def tick() -> None:
        nonlocal last, longest
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()
    began = time.perf_counter()
    last = began
    start()  # type: ignore[operator]
    while not finished.is_set():
        QCoreApplication.processEvents()
        time.sleep(0.001)
    took = time.perf_counter() - began
    timer.stop()
    return longest, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docx", type=int, default=150)
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from llamadesk.docs import DocumentIndex
    from llamadesk.ui.documents_worker import IndexJob

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-docs-gui-") as folder:
        root = Path(folder)
        paths = make_corpus(root / "corpus", args.docx)

        process_done = threading.Event()
        job = IndexJob(root / "process-home")
        job.finished.connect(lambda *_: process_done.set())
        job.failed.connect(lambda *_: process_done.set())
        stall_process, took_process = measure(app, lambda: job.start("bench", paths), process_done)

        thread_done = threading.Event()
        index = DocumentIndex(root / "thread-home" / "documents.sqlite3")

        def on_thread() -> None:
            try:
                index.add("bench", paths)
            finally:
                thread_done.set()

        stall_thread, took_thread = measure(
            app, lambda: threading.Thread(target=on_thread, daemon=True).start(), thread_done
        )
        index.close()
        job.wait(10)

    print(f"{'how':<32} {'longest stall':>14} {'took':>8}")
    print(f"{'indexing process (the panel)':<32} {stall_process * 1000:>11.1f} ms {took_process:>6.1f} s")
    print(f"{'a thread of the app':<32} {stall_thread * 1000:>11.1f} ms {took_thread:>6.1f} s")
    print(f"target: ≤ 50 ms with the panel's way -> {'met' if stall_process <= 0.05 else 'NOT met'}")
    return 0 if stall_process <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
