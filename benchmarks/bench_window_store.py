"""Start-up with a big conversation history: 5,000 conversations and 200,000 messages ÷ none.

From launching the process to the main window's first paint (as ``bench_startup.py`` measures
it), with a store of 5,000 conversations / 200,000 messages (built with plain batch inserts, as
``bench_store.py`` does) divided by the same with an empty store. Runs alternate and medians
are compared. The sidebar lists the newest conversations first and builds only visible rows;
the store's open-time checks are the part that grows with the file.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_window_store.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_startup import run_once
from bench_store import build_raw
from llamadesk.paths import get_paths

TARGET_RATIO = 1.25


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=5_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-store-") as folder:
        empty, big = Path(folder) / "empty", Path(folder) / "big"
        for home in (empty, big):
            home.mkdir()
        database = get_paths(big).ensure().database_file
        build_raw(database, args.conversations, args.messages, random.Random(7))
        size = database.stat().st_size
        print(f"store: {args.conversations:,} conversations, {args.messages:,} messages, {size / 1e6:.0f} MB")
        run_once(str(empty)), run_once(str(big))  # first runs migrate and warm the file cache
        times: dict[str, list[float]] = {"empty": [], "big": []}
        for _ in range(args.rounds):
            times["empty"].append(run_once(str(empty))[0])
            times["big"].append(run_once(str(big))[0])
    empty_s, big_s = statistics.median(times["empty"]), statistics.median(times["big"])
    ratio = big_s / empty_s
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"first paint: empty store {empty_s:.3f} s, big store {big_s:.3f} s")
    print(f"ratio big ÷ empty: {ratio:.2f} (target <= {TARGET_RATIO}): {verdict}")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
