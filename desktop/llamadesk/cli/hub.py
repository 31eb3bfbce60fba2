"""Command-line access to the Hub and the local library: ``hub search|files|download``, ``models ...``.

Handlers take the parsed arguments and return an exit status: 0 on success, 2 with one
line on stderr for anything a user can fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import Paths, get_paths
from .errors import HubError

if TYPE_CHECKING:
    from .catalog import ModelFile

EXIT_ERROR = 2


def _fail(message: str) -> int:
    print(f"llamadesk: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _paths() -> Paths:
    return get_paths().ensure()


def _token(paths: Paths) -> str | None:
    from ..settings import load_token

    return load_token(paths.token_file) or os.environ.get("HF_TOKEN") or None


def _models_dir(paths: Paths) -> Path:
    from ..settings import SettingsStore

    configured = SettingsStore(paths.settings_file).load().app.models_dir
    return Path(configured).expanduser() if configured else paths.models_dir


def _human(size: float) -> str:
    from .download import format_size

    return format_size(size)


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds > 360000:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# -- hub ---------------------------------------------------------------------------------------


def cmd_hub_search(args: argparse.Namespace) -> int:
    from .catalog import HubCatalog

    paths = _paths()
    try:
        page = HubCatalog(token=_token(paths)).search(args.query, sort=args.sort, limit=args.limit)
    except HubError as exc:
        return _fail(str(exc))
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
        print(f"No GGUF models found for “{args.query}”.", file=sys.stderr)
        return 0
    width = max(len(r.repo_id) for r in page.results)
    for r in page.results:
        params = f"{r.parameter_count / 1e9:.1f}B" if r.parameter_count else ""
        gated = " gated" if r.gated else ""
        print(f"{r.repo_id:<{width}}  {r.downloads:>10,} downloads  {r.likes:>6,} likes  {params:>6}{gated}")
    return 0


def cmd_hub_files(args: argparse.Namespace) -> int:
    from .catalog import HubCatalog

    paths = _paths()
    try:
        repo = HubCatalog(token=_token(paths)).files(args.repo, revision=args.revision)
    except HubError as exc:
        return _fail(str(exc))
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
        print(f"{repo.repo_id} has no GGUF files.", file=sys.stderr)
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
        print(f"{f.path:<{width}}  {_human(f.size):>9}  {label:<8} {verdict}{parts}{mark}")
    return 0


def cmd_hub_download(args: argparse.Namespace) -> int:
    from .catalog import FilePart, HubCatalog
    from .download import Downloader

    paths = _paths()
    token = _token(paths)
    models_dir = _models_dir(paths)
    chosen: ModelFile | FilePart
    try:
        repo = HubCatalog(token=token).files(args.repo, revision=args.revision)
        found = repo.find(args.file)
        if found is None:
            hits = _by_quant(repo.models, args.file)
            if len(hits) > 1:
                names = ", ".join(m.path for m in hits)
                return _fail(
                    f"{args.file} matches several files in {args.repo} ({names}): give the file's name."
                )
            found = hits[0] if hits else None
        chosen = found if found is not None else FilePart(args.file, 0)
        downloader = Downloader(models_dir, token=token)
        dest = Path(args.to).expanduser() if args.to else None
        reporter = _Reporter()
        path = downloader.download(
            args.repo, chosen, revision=args.revision, dest_dir=dest, progress=reporter
        )
        reporter.close()
    except HubError as exc:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("\nDownload interrupted: run the same command again to resume it.", file=sys.stderr)
        return 130
    print(path)
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
        total = _human(progress.total) if progress.total else "?"
        line = f"{state:<11} {progress.fraction * 100:5.1f}%  {_human(progress.done)} of {total}"
        if state == "downloading":
            line += f"  {_human(progress.speed)}/s  ETA {_duration(progress.eta)}"
        if progress.parts > 1:
            line += f"  (part {progress.part} of {progress.parts})"
        if self.tty:
            print(f"\r{line:<78}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


# -- models ------------------------------------------------------------------------------------


def _library() -> Any:
    from .library import ModelLibrary

    paths = _paths()
    return ModelLibrary(paths, models_dir=_models_dir(paths))


def cmd_models_list(args: argparse.Namespace) -> int:
    library = _library()
    entries = library.list()
    if library.warning:
        print(f"warning: {library.warning}", file=sys.stderr)
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print("No models yet: download one with `llamadesk hub download REPO FILE`.", file=sys.stderr)
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        state = "" if e.state == "ok" else f"  [{e.state}: {e.message}]" if e.message else f"  [{e.state}]"
        kind = f" ({e.kind})" if e.kind != "model" else ""
        print(f"{e.name:<{width}}  {_human(e.size):>9}  {e.source:<10}  {e.key}{kind}{state}")
    return 0


def cmd_models_import(args: argparse.Namespace) -> int:
    try:
        entry = _library().import_model(args.path, copy=args.copy)
    except HubError as exc:
        return _fail(str(exc))
    how = "copied into the library" if args.copy else "added in place"
    print(f"{entry.name}: {how} ({entry.key})")
    return 0


def cmd_models_remove(args: argparse.Namespace) -> int:
    library = _library()
    try:
        entry = library.find(args.name)
        if entry is None:
            return _fail(f"no model named {args.name!r} in the library (see `llamadesk models list`)")
        library.remove(entry.key)
    except HubError as exc:
        return _fail(str(exc))
    if entry.deletable:
        print(f"Removed {entry.name}: {_human(entry.size)} freed.")
    else:
        print(f"Removed {entry.name} from the library; the file stays at {entry.path}.")
    return 0


# -- registration ------------------------------------------------------------------------------


def add_hub_commands(subparsers: Any) -> None:
    """Register ``hub`` and ``models`` on the main parser's subparsers."""
    hub = subparsers.add_parser("hub", help="search and download GGUF models from the Hugging Face Hub")
    hub_sub = hub.add_subparsers(dest="hub_command", metavar="COMMAND")
    hub.set_defaults(func=lambda args: _usage(hub))

    search = hub_sub.add_parser("search", help="find GGUF models")
    search.add_argument("query", nargs="?", default="", help="words in the model's name")
    search.add_argument("--limit", type=int, default=20, help="how many results (default 20)")
    search.add_argument("--sort", choices=("downloads", "likes", "trending", "recent"), default="downloads")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=cmd_hub_search)

    files = hub_sub.add_parser("files", help="list a repository's GGUF files, sizes and whether they fit")
    files.add_argument("repo", help="owner/name")
    files.add_argument("--revision", default="main")
    files.add_argument("--json", action="store_true", help="print JSON")
    files.set_defaults(func=cmd_hub_files)

    download = hub_sub.add_parser(
        "download", help="download a model file (run it again to resume an interrupted download)"
    )
    download.add_argument("repo", help="owner/name")
    download.add_argument("file", help="file path in the repo, or a quantization such as Q4_K_M")
    download.add_argument("--revision", default="main")
    download.add_argument("--to", metavar="DIR", help="folder to save into (default: the models folder)")
    download.set_defaults(func=cmd_hub_download)

    models = subparsers.add_parser("models", help="list, import and remove local models")
    models_sub = models.add_subparsers(dest="models_command", metavar="COMMAND")
    models.set_defaults(func=lambda args: _usage(models))

    listing = models_sub.add_parser("list", help="every model on this machine")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_models_list)

    importing = models_sub.add_parser("import", help="add a GGUF file from elsewhere")
    importing.add_argument("path", help="the .gguf file (the first part of a split model)")
    importing.add_argument("--copy", action="store_true", help="copy it into the models folder")
    importing.set_defaults(func=cmd_models_import)

    remove = models_sub.add_parser("remove", help="delete a downloaded model or forget an imported one")
    remove.add_argument("name", help="name, key or path (see `models list`)")
    remove.set_defaults(func=cmd_models_remove)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_ERROR
