"""`llamadesk models list|import|remove`: the models on this machine.

Listing and name lookups use the library's remembered facts, so they cost the same with 200
models as with none; removing deletes only files inside the models folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..hub.errors import HubError
from .common import fail, shown, warn
from .hub import human, models_dir, paths


def _library() -> Any:
    from ..hub.library import ModelLibrary

    where = paths()
    return ModelLibrary(where, models_dir=models_dir(where))


def cmd_models_list(args: argparse.Namespace) -> int:
    library = _library()
    entries = library.list()
    if library.warning:
        warn(library.warning)
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print("No models yet: download one with `llamadesk hub download REPO FILE`.", file=sys.stderr)
        return 0
    names = [shown(e.name) for e in entries]
    width = max(len(n) for n in names)
    for name, e in zip(names, entries, strict=True):
        state = "" if e.state == "ok" else f"  [{e.state}: {e.message}]" if e.message else f"  [{e.state}]"
        kind = f" ({e.kind})" if e.kind != "model" else ""
        print(f"{name:<{width}}  {human(e.size):>9}  {e.source:<10}  {shown(e.key)}{kind}{shown(state)}")
    return 0


def cmd_models_import(args: argparse.Namespace) -> int:
    try:
        entry = _library().import_model(args.path, copy=args.copy)
    except HubError as exc:
        return fail(str(exc))
    how = "copied into the library" if args.copy else "added in place"
    print(f"{shown(entry.name)}: {how} ({shown(entry.key)})")
    return 0


def cmd_models_remove(args: argparse.Namespace) -> int:
    library = _library()
    try:
        entry = library.find(args.name)
        if entry is None:
            return fail(f"no model named {args.name!r} in the library (see `llamadesk models list`)")
        library.remove(entry.key)
    except HubError as exc:
        return fail(str(exc))
    if entry.deletable:
        print(f"Removed {shown(entry.name)}: {human(entry.size)} freed.")
    else:
        print(f"Removed {shown(entry.name)} from the library; the file stays at {shown(entry.path)}.")
    return 0
