"""`llamadesk docs add|list|remove|search|refresh`: document collections for chats with sources.

Indexing prints its progress on stderr (one updating line on a terminal, a line per file
otherwise) and every skipped file with the reason; Ctrl+C stops between files and keeps what
was indexed. Searching works with no model at all (by words); ``--embed MODEL`` adds vector
search with a GGUF embedding model, fused with the word ranking.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from ..docs import DocumentIndex, Embedder, IndexProgress, IndexReport, LlamaEmbedder
from .common import EXIT_INTERRUPTED, fail, note, shown, warn


def _index() -> DocumentIndex:
    from ..paths import get_paths

    return DocumentIndex.in_folder(get_paths().ensure().data_dir)


def _embedder(name: str | None) -> Embedder | None:
    if not name:
        return None
    from .resolve import resolve_model

    return LlamaEmbedder(resolve_model(name))


class _Progress:
    """Progress on stderr: an updating line on a terminal, else a line per file."""

    def __init__(self) -> None:
        try:
            self.tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.shown = False

    def __call__(self, progress: IndexProgress) -> None:
        if not progress.path:
            self.end()
            return
        line = f"[{progress.done_files + 1}/{progress.total_files}] {progress.path}"
        if self.tty:
            width = 100
            text = shown(line, stream=sys.stderr)
            text = text if len(text) <= width else "…" + text[-(width - 1) :]
            print(f"\r\x1b[2K{text}", end="", file=sys.stderr, flush=True)
            self.shown = True
        else:
            print(shown(line, stream=sys.stderr), file=sys.stderr)

    def end(self) -> None:
        if self.shown:
            print("\r\x1b[2K", end="", file=sys.stderr, flush=True)
            self.shown = False


def _summary(name: str, index: DocumentIndex, report: IndexReport) -> str:
    info = next((c for c in index.collections() if c.name == name), None)
    totals = f"; {info.files} files, {info.chunks} chunks in all" if info is not None else ""
    return (
        f"{shown(name)}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.skipped)} skipped{totals}"
    )


def _index_command(args: argparse.Namespace, refresh: bool) -> int:
    embedder = _embedder(getattr(args, "embed", None))
    progress = _Progress()
    cancel = threading.Event()
    with _index() as index:
        try:
            if refresh:
                report = index.refresh(args.name, progress=progress, cancel=cancel, embedder=embedder)
            else:
                paths = [Path(p) for p in args.paths]
                report = index.add(args.name, paths, progress=progress, cancel=cancel, embedder=embedder)
        except KeyboardInterrupt:
            progress.end()
            note("interrupted: the files indexed so far are kept (run the command again to finish)")
            return EXIT_INTERRUPTED
        progress.end()
        for skipped in report.skipped:
            path, reason = (shown(text, stream=sys.stderr) for text in (skipped.path, skipped.reason))
            warn(f"skipped {path}: {reason}")
        print(_summary(args.name, index, report))
    return 0


def cmd_docs_add(args: argparse.Namespace) -> int:
    return _index_command(args, refresh=False)


def cmd_docs_refresh(args: argparse.Namespace) -> int:
    return _index_command(args, refresh=True)


def cmd_docs_list(args: argparse.Namespace) -> int:
    with _index() as index:
        if args.name is None:
            collections = index.collections()
            if args.json:
                print(json.dumps([c.__dict__ for c in collections], indent=2))
                return 0
            if not collections:
                print(
                    "No document collections yet: add one with `llamadesk docs add NAME PATH...`.",
                    file=sys.stderr,
                )
                return 0
            width = max(len(shown(c.name)) for c in collections)
            for c in collections:
                skipped = f", {c.skipped} skipped" if c.skipped else ""
                print(f"{shown(c.name):<{width}}  {c.files} files, {c.chunks} chunks{skipped}")
            return 0
        files = index.files(args.name)
        if args.json:
            print(json.dumps([f.__dict__ for f in files], indent=2))
            return 0
        if not files:
            print(f"{shown(args.name)} has no files yet.", file=sys.stderr)
        for f in files:
            state = f"{f.chunks} chunks" if f.status == "indexed" else f"skipped: {f.reason}"
            print(f"{shown(f.path)}  [{shown(state)}]")
    return 0


def cmd_docs_remove(args: argparse.Namespace) -> int:
    with _index() as index:
        index.remove(args.name)
    print(f"Removed the collection {shown(args.name)} (your files are untouched).")
    return 0


def _passage_dict(number: int, passage: Any) -> dict[str, Any]:
    return {"rank": number, **passage.__dict__}


def cmd_docs_search(args: argparse.Namespace) -> int:
    if not args.query.strip():
        return fail("the question is empty: say what to look for")
    embedder = _embedder(args.embed)
    with _index() as index:
        names = [n for n in args.name.split(",") if n] if "," in args.name else [args.name]
        passages = index.search(names, args.query, k=args.k, embedder=embedder)
    if args.json:
        print(json.dumps([_passage_dict(i, p) for i, p in enumerate(passages, 1)], indent=2))
        return 0
    if not passages:
        print("No passage matches that question.", file=sys.stderr)
        return 0
    for number, p in enumerate(passages, start=1):
        where = f" — {p.location}" if p.location else ""
        print(f"[{number}] {shown(p.title)}{shown(where)}  (score {p.score:.3f})")
        print(f"    {shown(p.path)}")
        for line in p.text.strip().splitlines():
            print(f"    {shown(line)}")
        print()
    return 0
