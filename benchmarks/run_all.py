"""Run every benchmark one after the other and print their reports (``make benchmark``).

Each script measures its figures side by side in one run and prints ratios against a
baseline; see each script's docstring. The GPU check needs a CUDA or Metal build and is
not part of this run (``benchmarks/gpu_offload_check.py MODEL``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    ("Engine and inference thread", ["bench_engine.py"]),
    ("Conversation store", ["bench_store.py"]),
    ("Sidebar", ["bench_sidebar.py"]),
    ("Chat view streaming", ["bench_chat_view.py"]),
    ("Start-up", ["bench_startup.py"]),
    ("Start-up with 200 models", ["bench_window_library.py"]),
    ("Start-up with 200,000 messages", ["bench_window_store.py"]),
    ("Model headers and library", ["bench_library.py"]),
    ("Command line with a big library", ["bench_cli.py"]),
    ("Local API server", ["bench_api.py"]),
    ("Model lab: perplexity and speed", ["bench_lab.py"]),
    ("Long chats: context shift and saved states", ["bench_long_chat.py", "--baseline"]),
    ("Replies after a context shift", ["shift_agreement.py"]),
    ("Context reuse per chat template", ["template_reuse.py"]),
    ("Downloads", ["bench_download.py", "--size-mb", "500", "--rounds", "3"]),
    ("Documents: retrieval quality and speed", ["bench_docs.py"]),
    ("Documents in a chat: follow-ups keep the cache", ["bench_docs_chat.py"]),
    ("Documents: the window while indexing", ["bench_docs_gui.py"]),
    ("One model across two RPC workers", ["bench_rpc.py"]),
]


def main() -> int:
    failed = []
    for title, argv in SCRIPTS:
        print(f"\n=== {title} ({' '.join(argv)})", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]], check=False)
        print(f"--- {time.perf_counter() - started:.0f} s, exit {result.returncode}", flush=True)
        if result.returncode:
            failed.append(title)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
