"""Document retrieval, measured: quality on a question set, indexing throughput, query latency.

1. Quality: ``data/docs_eval/questions.json`` holds questions written in other words than the
   corpus (``data/docs_eval/corpus/``: the course notes the product grew from and LlamaDesk's own
   docs), each with the file and a short piece of text the answering passage must contain (so
   the set survives changes to chunking). Prints recall@1, recall@5 and MRR (over the top 10)
   for lexical search (FTS5/BM25), and, with an embedding model, for vector-only and hybrid
   (reciprocal rank fusion). Without ``--embed`` the starter chat model (SmolLM2, mean-pooled)
   is tried as the fallback embedder; ``--no-embed`` skips it. Target: recall@5 >= 0.85 lexical.
2. Indexing throughput: a collection of about ``--chunks`` chunks made of copies of the corpus
   (each copy made unique), in MB/s and chunks/s, and PDFs of text in pages/s.
3. Query latency on that collection: median and p95 over every question, several rounds,
   lexical; and the vector scan + fusion with random vectors of the starter model's size
   (the query embedding's own time is printed apart). Target: <= 50 ms at 10,000 chunks.

    PYTHONPATH=desktop .venv/bin/python benchmarks/bench_docs.py [--embed MODEL.gguf] [--no-embed]
        [--chunks 10000] [--rounds 5] [--misses]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "desktop"))
sys.path.insert(0, str(ROOT / "tests"))

from llamadesk.docs import DocumentIndex, Embedder, LlamaEmbedder, Passage  # noqa: E402
from llamadesk.paths import starter_model_path  # noqa: E402
from llamadesk.safejson import loads  # noqa: E402
from pdf_files import text_pdf  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "docs_eval"
CORPUS = DATA / "corpus"
PAGE_CHARS = 3000  # a printed page of prose, to state text throughput in pages too


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def load_questions() -> list[dict[str, str]]:
    data = loads((DATA / "questions.json").read_text(encoding="utf-8"))
    return [{"q": str(d["q"]), "file": str(d["file"]), "contains": str(d["contains"])} for d in data]


def hit(passage: Passage, question: dict[str, str]) -> bool:
    return Path(passage.path).name == question["file"] and _norm(question["contains"]) in _norm(passage.text)


def check_set(index: DocumentIndex, questions: Sequence[dict[str, str]]) -> None:
    """Every expected passage must exist: a question whose answer is in no chunk is a broken test."""
    texts = {}
    for f in index.files("eval"):
        texts[Path(f.path).name] = f.path
    broken = []
    for q in questions:
        path = texts.get(q["file"])
        if path is None:
            broken.append(f"{q['file']} is not in the corpus")
            continue
        chunks = index._query(
            "SELECT k.text FROM chunks k JOIN files f ON f.id = k.file_id WHERE f.path = ?", (path,)
        )
        if not any(_norm(q["contains"]) in _norm(t) for (t,) in chunks):
            broken.append(f"{q['file']}: no chunk contains {q['contains']!r}")
    if broken:
        raise SystemExit("broken question set:\n  " + "\n  ".join(broken))


def evaluate(
    index: DocumentIndex, questions: Sequence[dict[str, str]], embedder: Embedder | None, show: bool
) -> tuple[float, float, float]:
    """recall@1, recall@5 and MRR@10 of ``index.search`` over the questions."""
    r1 = r5 = mrr = 0.0
    for q in questions:
        passages = index.search(["eval"], q["q"], k=10, embedder=embedder)
        rank = next((i for i, p in enumerate(passages, 1) if hit(p, q)), None)
        if rank is not None:
            r1 += rank == 1
            r5 += rank <= 5
            mrr += 1.0 / rank
        if show and (rank is None or rank > 5):
            top = passages[0] if passages else None
            where = f"{Path(top.path).name} {top.location}" if top else "nothing"
            print(f"    miss (rank {rank}): {q['q']}  [got {where}]")
    n = len(questions)
    return r1 / n, r5 / n, mrr / n


def vector_only(
    index: DocumentIndex, questions: Sequence[dict[str, str]], embedder: Embedder
) -> tuple[float, ...]:
    ids = [index._collection_id("eval")]
    r1 = r5 = mrr = 0.0
    for q in questions:
        ranked = index._semantic(ids, q["q"], 10, embedder)
        passages = [index.passage(c) for c, _ in ranked]
        rank = next((i for i, p in enumerate(passages, 1) if p is not None and hit(p, q)), None)
        if rank is not None:
            r1 += rank == 1
            r5 += rank <= 5
            mrr += 1.0 / rank
    n = len(questions)
    return r1 / n, r5 / n, mrr / n


# -- throughput and latency


def make_copies(folder: Path, copies: int) -> int:
    """``copies`` of the corpus, each file given a unique first line; returns the bytes written."""
    total = 0
    sources = sorted(CORPUS.iterdir())
    for n in range(copies):
        target = folder / f"copy{n:04d}"
        target.mkdir(parents=True)
        for source in sources:
            text = f"Copy {n} of {source.name}.\n\n" + source.read_text(encoding="utf-8")
            (target / source.name).write_text(text, encoding="utf-8")
            total += len(text.encode("utf-8"))
    return total


def make_pdfs(folder: Path, files: int, pages: int) -> None:
    """PDFs of prose lines taken from the corpus, ``pages`` pages each."""
    rng = random.Random(7)
    lines = [
        line.strip()[:90]
        for source in sorted(CORPUS.iterdir())
        for line in source.read_text(encoding="utf-8").splitlines()
        if len(line.strip()) > 30 and line.strip().isascii()
    ]
    folder.mkdir(parents=True)
    for n in range(files):
        body = [[rng.choice(lines) for _ in range(45)] for _ in range(pages)]
        (folder / f"report{n:03d}.pdf").write_bytes(text_pdf(body))


class RandomEmbedder:
    """Random unit vectors of a real model's size: times the scan and fusion, not a model."""

    def __init__(self, dim: int) -> None:
        self.name = f"random-{dim}"
        self.dim = dim
        self._rng = random.Random(3)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[self._rng.gauss(0.0, 1.0) for _ in range(self.dim)] for _ in texts]


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def time_queries(
    search: Callable[[str], object], questions: Sequence[dict[str, str]], rounds: int
) -> list[float]:
    times = []
    for _ in range(rounds):
        for q in questions:
            started = time.perf_counter()
            search(q["q"])
            times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embed", metavar="MODEL", help="a GGUF embedding model for hybrid search")
    parser.add_argument("--no-embed", action="store_true", help="lexical search only")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="embedding threads (0: one per core)",
    )
    parser.add_argument("--chunks", type=int, default=10_000, help="size of the latency collection")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--misses", action="store_true", help="list the questions missed in the top 5")
    args = parser.parse_args()

    questions = load_questions()
    if (
        args.threads > 0
    ):  # the embedding context takes one thread per core; on a shared machine fewer is faster
        from llamadesk.engine import engine

        engine._physical_cores = lambda: args.threads  # type: ignore[assignment]
    work = Path(tempfile.mkdtemp(prefix="bench-docs-"))
    try:
        index = DocumentIndex(work / "eval.sqlite3")
        report = index.add("eval", [CORPUS])
        info = index.collections()[0]
        check_set(index, questions)
        print(
            f"Quality: {len(questions)} questions over {report.added} files, {info.chunks} chunks "
            f"({sum(p.stat().st_size for p in CORPUS.iterdir()) / 1000:.0f} kB)"
        )
        r1, r5, mrr = evaluate(index, questions, None, args.misses)
        print(f"  lexical (FTS5/BM25)      recall@1 {r1:.3f}  recall@5 {r5:.3f}  MRR {mrr:.3f}", end="")
        print("   target r@5 >= 0.85")

        embedder: LlamaEmbedder | None = None
        model = args.embed or (None if args.no_embed else starter_model_path())
        if model is not None:
            embedder = LlamaEmbedder(Path(model))
            started = time.perf_counter()
            index.refresh("eval", embedder=embedder)  # unchanged files get their vectors
            seconds = time.perf_counter() - started
            label = f"{embedder.name}" + ("" if args.embed else " (the starter chat model, mean-pooled)")
            print(
                f"  embedder: {label}, {embedder.dim} dims, {info.chunks} chunks embedded in {seconds:.1f} s"
            )
            v1, v5, vm = vector_only(index, questions, embedder)
            print(f"  vectors only             recall@1 {v1:.3f}  recall@5 {v5:.3f}  MRR {vm:.3f}")
            h1, h5, hm = evaluate(index, questions, embedder, args.misses)
            print(f"  hybrid (RRF)             recall@1 {h1:.3f}  recall@5 {h5:.3f}  MRR {hm:.3f}")
            verdict = "helps" if h5 > r5 or (h5 == r5 and hm > mrr) else "does not help"
            print(
                f"  hybrid vs lexical: recall@5 {h5 - r5:+.3f}, MRR {hm - mrr:+.3f}: the embedder {verdict}"
            )
        index.close()

        # Throughput: copies of the corpus until the collection has about --chunks chunks.
        copies = max(1, round(args.chunks / info.chunks))
        text_dir = work / "text"
        size = make_copies(text_dir, copies)
        big = DocumentIndex(work / "big.sqlite3")
        started = time.perf_counter()
        big.add("big", [text_dir])
        seconds = time.perf_counter() - started
        chunks = big.collections()[0].chunks
        print(
            f"Indexing: {copies} copies of the corpus, {size / 1e6:.1f} MB -> {chunks:,} chunks "
            f"in {seconds:.1f} s: "
            f"{size / 1e6 / seconds:.2f} MB/s, {chunks / seconds:,.0f} chunks/s, "
            f"{size / PAGE_CHARS / seconds:,.0f} pages/s of text ({PAGE_CHARS:,} characters a page)"
        )
        pdf_dir = work / "pdf"
        make_pdfs(pdf_dir, files=20, pages=10)
        started = time.perf_counter()
        pdf_report = big.add("pdfs", [pdf_dir])
        seconds = time.perf_counter() - started
        print(f"  PDFs: {pdf_report.added} files x 10 pages in {seconds:.2f} s: {200 / seconds:,.0f} pages/s")

        started = time.perf_counter()
        again = big.refresh("big")
        seconds = time.perf_counter() - started
        print(f"  refresh with nothing changed: {again.unchanged} files checked in {seconds:.2f} s")

        lexical = time_queries(lambda q: big.search(["big"], q, k=5), questions, args.rounds)
        print(
            f"Query latency at {chunks:,} chunks, {len(lexical)} queries: lexical median "
            f"{statistics.median(lexical):.1f} ms, p95 {percentile(lexical, 0.95):.1f} ms"
            "   target <= 50 ms"
        )
        dim = embedder.dim if embedder is not None else 576
        fake = RandomEmbedder(dim)
        big.refresh("big", embedder=fake)
        big.search(["big"], "warm the vector cache", embedder=fake)
        hybrid = time_queries(lambda q: big.search(["big"], q, k=5, embedder=fake), questions, args.rounds)
        print(
            f"  hybrid (vector scan of {chunks:,} x {dim} float32 + fusion, query vector excluded): median "
            f"{statistics.median(hybrid):.1f} ms, p95 {percentile(hybrid, 0.95):.1f} ms"
        )
        if embedder is not None:
            times = time_queries(lambda q: embedder.embed([q]), questions[:20], 1)
            print(f"  embedding one question with {embedder.name}: median {statistics.median(times):.1f} ms")
            embedder.close()
        big.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
