"""`llamadesk hub search|files|download`: find GGUF models on the Hugging Face Hub and download them.

Handlers take the parsed arguments and return an exit status: 0 on success, 2 with one
line on stderr for anything a user can fix. Names that come from the Hub are shown with
control characters escaped on a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..hub.errors import HubError
from ..paths import Paths, get_paths
from .common import EXIT_INTERRUPTED, fail, shown

if TYPE_CHECKING:
    from ..hub.catalog import ModelFile


def paths() -> Paths:
    return get_paths().ensure()


def hub_token(where: Paths) -> str | None:
    """The Hub access token: the one saved in Preferences (keyring or private file), else $HF_TOKEN."""
    from ..secrets import HF_TOKEN, SecretStore

    return SecretStore(where.config_dir).get(HF_TOKEN) or os.environ.get("HF_TOKEN") or None


def models_dir(where: Paths) -> Path:
    """The models folder set in Preferences, else the default one."""
    from .resolve import configured_models_folder

    return configured_models_folder(where)


def human(size: float) -> str:
    from ..hub.download import format_size

    return format_size(size)


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds > 360000:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# -- hub ---------------------------------------------------------------------------------------


def cmd_hub_search(args: argparse.Namespace) -> int:
    from ..hub.catalog import HubCatalog

    where = paths()
    try:
        page = HubCatalog(token=hub_token(where)).search(args.query, sort=args.sort, limit=args.limit)
    except HubError as exc:
        return fail(str(exc))
    if args.json:
        rows = [
            {
                "repo_id": r.repo_id,
                "downloads": r.downloads,
                "likes": r.likes,
                "last_modified": r.last_modified.isoformat() if r.last_modified else None,
                "gated": r.gated,
                "architecture": r.architecture,
                "parameter_count": r.parameter_count,
                "context_length": r.context_length,
            }
            for r in page.results
        ]
        print(json.dumps({"results": rows, "next_cursor": page.next_cursor}, indent=2))
        return 0
    if not page.results:
        print(f"No GGUF models found for “{shown(args.query, stream=sys.stderr)}”.", file=sys.stderr)
        return 0
    width = max(len(r.repo_id) for r in page.results)
    for r in page.results:
        params = f"{r.parameter_count / 1e9:.1f}B" if r.parameter_count else ""
        gated = " gated" if r.gated else ""
        name = shown(r.repo_id)
        print(f"{name:<{width}}  {r.downloads:>10,} downloads  {r.likes:>6,} likes  {params:>6}{gated}")
    return 0


def cmd_hub_files(args: argparse.Namespace) -> int:
    from ..hub.catalog import HubCatalog

    where = paths()
    try:
        repo = HubCatalog(token=hub_token(where)).files(args.repo, revision=args.revision)
    except HubError as exc:
        return fail(str(exc))
    if args.json:
        files = [
            {
                "name": f.name,
                "paths": f.paths,
                "size": f.size,
                "sha256": [p.sha256 for p in f.parts],
                "quantization": f.quantization,
                "bits_per_weight": f.bits_per_weight,
                "kind": f.kind,
                "complete": f.complete,
                "verdict": f.verdict,
                "fit": f.fit.summary if f.fit is not None else None,
                "recommended": f is repo.recommended,
            }
            for f in repo.files
        ]
        print(
            json.dumps(
                {"repo_id": repo.repo_id, "commit": repo.commit, "gated": repo.gated, "files": files},
                indent=2,
            )
        )
        return 0
    if not repo.files:
        print(f"{shown(repo.repo_id, stream=sys.stderr)} has no GGUF files.", file=sys.stderr)
        return 0
    width = max(len(f.path) for f in repo.files)
    for f in repo.files:
        label = f.kind if f.kind != "model" else (f.quantization or "")
        parts = f" ({len(f.parts)} parts)" if f.is_split else ""
        verdict = {
            "gpu": "fits on GPU",
            "hybrid": "fits (GPU+RAM)",
            "cpu": "fits in RAM",
            "too_large": "too large",
        }.get(f.verdict or "", "")
        mark = " ← recommended" if f is repo.recommended else ""
        print(f"{shown(f.path):<{width}}  {human(f.size):>9}  {label:<8} {verdict}{parts}{mark}")
    return 0


def cmd_hub_download(args: argparse.Namespace) -> int:
    from ..hub.catalog import FilePart, HubCatalog
    from ..hub.download import Downloader

    where = paths()
    token = hub_token(where)
    target_dir = models_dir(where)
    chosen: ModelFile | FilePart
    try:
        repo = HubCatalog(token=token).files(args.repo, revision=args.revision)
        found = repo.find(args.file)
        if found is None:
            hits = _by_quant(repo.models, args.file)
            if len(hits) > 1:
                names = ", ".join(m.path for m in hits)
                return fail(
                    f"{args.file} matches several files in {args.repo} ({names}): give the file's name."
                )
            found = hits[0] if hits else None
        chosen = found if found is not None else FilePart(args.file, 0)
        downloader = Downloader(target_dir, token=token)
        dest = Path(args.to).expanduser() if args.to else None
        reporter = _Reporter()
        path = downloader.download(
            args.repo, chosen, revision=args.revision, dest_dir=dest, progress=reporter
        )
        reporter.close()
    except HubError as exc:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        return fail(str(exc))
    except KeyboardInterrupt:
        print("\nDownload interrupted: run the same command again to resume it.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(shown(path))
    return 0


def _by_quant(models: list[ModelFile], wanted: str) -> list[ModelFile]:
    """The complete models whose quantization is ``wanted`` (e.g. "q4_k_m")."""
    return [m for m in models if m.complete and (m.quantization or "").lower() == wanted.strip().lower()]


class _Reporter:
    """Progress on stderr: a live line on a terminal, a line every few seconds otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.state = ""

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        state = progress.state.value
        if state in ("failed", "paused", "cancelled"):
            return  # the command prints the reason itself
        changed = state != self.state
        self.state = state
        if not self.tty and not changed and now - self.last < 5:
            return
        self.last = now
        total = human(progress.total) if progress.total else "?"
        line = f"{state:<11} {progress.fraction * 100:5.1f}%  {human(progress.done)} of {total}"
        if state == "downloading":
            line += f"  {human(progress.speed)}/s  ETA {_duration(progress.eta)}"
        if progress.parts > 1:
            line += f"  (part {progress.part} of {progress.parts})"
        if self.tty:
            print(f"\r{line:<78}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
