"""Download throughput against curl, and bytes fetched twice after a resume.

Serves a generated file (500 MB by default) from the test suite's local Hub server and
downloads it alternately with LlamaDesk's downloader (HEAD + GET + SHA-256 + atomic move)
and with ``curl -L`` (plain GET to a file), then prints the throughput ratio (target
>= 0.9). Then it breaks a download mid-file, resumes it, and reports how many bytes were
requested again beyond what was already on disk (target 0). Last, it measures how long the
download queue's ``shutdown`` takes while a transfer is blocked on a server that went silent
(target: well under a second, with the .part file kept).

    PYTHONPATH=desktop .venv/bin/python benchmarks/bench_download.py [--size-mb 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "desktop"))

from hub_server import FakeHub  # noqa: E402
from llamadesk.hub import Downloader, DownloadQueue, DownloadState  # noqa: E402

REPO = "bench/Big-GGUF"
FILE = "Big-Q4_K_M.gguf"
MB = 1_000_000


def make_file(path: Path, size: int) -> None:
    """Random bytes behind the GGUF magic (the downloader refuses a .gguf file without it)."""
    block = os.urandom(4 * 1024 * 1024)
    with path.open("wb") as handle:
        handle.write(b"GGUF")
        left = size - 4
        while left > 0:
            handle.write(block[: min(left, len(block))])
            left -= len(block)


def run_ours(hub: FakeHub, work: Path) -> float:
    target = work / "ours"
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    Downloader(target, endpoint=hub.url).download(REPO, FILE)
    return time.perf_counter() - start


def run_curl(curl: str, url: str, work: Path) -> float:
    out = work / "curl.out"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run([curl, "-s", "-S", "-L", "-o", str(out), url], check=True)
    return time.perf_counter() - start


def run_urllib(url: str, work: Path) -> float:
    out = work / "urllib.out"
    start = time.perf_counter()
    with urllib.request.urlopen(url) as response, out.open("wb") as handle:
        while chunk := response.read(1 << 20):
            handle.write(chunk)
    return time.perf_counter() - start


def resume_after_drop(hub: FakeHub, work: Path, size: int) -> tuple[int, int]:
    """Connection dropped mid-file: (bytes the client had, first byte it asked for next)."""
    target = work / "drop"
    shutil.rmtree(target, ignore_errors=True)
    hub.clear_requests()
    hub.faults.drop_after, hub.faults.drop_times = size // 2, 1
    Downloader(target, endpoint=hub.url).download(REPO, FILE)
    ranges = [r.range for r in hub.byte_requests(FILE)]
    assert ranges[0] is None and len(ranges) == 2, ranges
    return size // 2, int(str(ranges[1]).split("=")[1].rstrip("-"))


def resume_after_restart(hub: FakeHub, work: Path, size: int) -> tuple[int, int]:
    """Paused mid-file, then a new downloader (as after an app restart): (.part size, next range start)."""
    target = work / "restart"
    shutil.rmtree(target, ignore_errors=True)
    hub.faults.hold_after = size // 3
    reached = threading.Event()
    task = Downloader(target, endpoint=hub.url).task(
        REPO, FILE, progress=lambda p: reached.set() if p.done >= size // 3 else None
    )
    task.start()
    reached.wait(120)
    task.pause()
    task.wait(30)
    assert task.state is DownloadState.PAUSED
    hub.faults.hold_after = None
    hub.faults.release.set()
    part = target / "bench__Big-GGUF" / (FILE + ".part")
    have = part.stat().st_size
    hub.clear_requests()
    Downloader(target, endpoint=hub.url).download(REPO, FILE)
    ranges = [r.range for r in hub.byte_requests(FILE)]
    return have, int(str(ranges[0]).split("=")[1].rstrip("-"))


def shutdown_while_stalled(hub: FakeHub, work: Path, size: int) -> tuple[float, bool, int]:
    """Quit while the server holds the body mid-file: (seconds shutdown took, threads ended, .part bytes)."""
    target = work / "shutdown"
    shutil.rmtree(target, ignore_errors=True)
    hub.faults.release.clear()
    hub.faults.hold_after = size // 4
    reached = threading.Event()
    queue = DownloadQueue(
        Downloader(target, endpoint=hub.url, timeout=30),
        on_progress=lambda task, p: reached.set() if p.done >= size // 4 else None,
    )
    queue.add(REPO, FILE)
    reached.wait(120)
    start = time.perf_counter()
    ended = queue.shutdown(timeout=1.0)
    took = time.perf_counter() - start
    hub.faults.hold_after = None
    hub.faults.release.set()
    part = target / "bench__Big-GGUF" / (FILE + ".part")
    return took, ended, part.stat().st_size if part.exists() else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.size_mb * MB
    curl = shutil.which("curl") or ("/usr/bin/curl" if Path("/usr/bin/curl").exists() else None)
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        work = Path(tmp)
        source = work / "source.bin"
        make_file(source, size)
        with FakeHub() as hub:
            hub.add_repo(REPO)
            hub.add_file(REPO, FILE, source)
            url = f"{hub.url}/{REPO}/resolve/main/{FILE}"
            baseline_name = "curl" if curl else "urllib read loop (curl not found)"
            ours: list[float] = []
            base: list[float] = []
            run_ours(hub, work)  # warm the page cache and the imports
            for _ in range(args.rounds):
                base.append(run_curl(curl, url, work) if curl else run_urllib(url, work))
                ours.append(run_ours(hub, work))
            ours_rate = size / statistics.median(ours) / MB
            base_rate = size / statistics.median(base) / MB
            print(f"file: {args.size_mb} MB from {hub.url} (local), {args.rounds} alternating rounds")
            print(f"{baseline_name:>34}: {base_rate:8.0f} MB/s  (median of {[round(t, 2) for t in base]} s)")
            print(
                f"{'LlamaDesk (HEAD+GET+SHA-256)':>34}: {ours_rate:8.0f} MB/s  (median of "
                f"{[round(t, 2) for t in ours]} s)"
            )
            pairs = sorted(b / o for b, o in zip(base, ours, strict=True))  # per round: same load on both
            print(f"{'ratio of medians (target >= 0.9)':>34}: {ours_rate / base_rate:8.2f}")
            print(
                f"{'median of per-round ratios':>34}: {statistics.median(pairs):8.2f}  "
                f"(rounds: {[round(r, 2) for r in pairs]})"
            )
            had, asked = resume_after_drop(hub, work, size)
            print(
                f"{'dropped connection, resumed':>34}: had {had:,} bytes, asked from byte {asked:,}: "
                f"{max(0, had - asked):,} bytes re-sent (target 0)"
            )
            had, asked = resume_after_restart(hub, work, size)
            print(
                f"{'paused, resumed after restart':>34}: .part had {had:,} bytes, asked from byte {asked:,}: "
                f"{max(0, had - asked):,} bytes re-sent (target 0)"
            )
            took, ended, kept = shutdown_while_stalled(hub, work, size)
            print(
                f"{'shutdown, server silent':>34}: {took * 1000:8.1f} ms, threads ended: {ended}, "
                f".part kept: {kept:,} bytes"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
