"""`llamadesk conversations ...`: list, show, export, search and import saved conversations."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..paths import get_paths
from ..settings import atomic_write_text
from .store import Conversation, ConversationStore, StoreError

Handler = Callable[[argparse.Namespace], int]


def add_conversation_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``conversations list|show|export|search|import``; each sets ``func`` to its handler."""
    parser = subparsers.add_parser(
        "conversations", help="list, show, export, search and import conversations"
    )
    commands = parser.add_subparsers(dest="conversations_command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="list conversations, pinned first, then the most recent")
    listing.add_argument("--limit", type=int, default=None, help="show at most this many")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=list_command)

    show = commands.add_parser("show", help="print the shown branch of a conversation")
    show.add_argument("id", type=int, help="conversation id (see `conversations list`)")
    show.add_argument("--json", action="store_true", help="print the full JSON export")
    show.set_defaults(func=show_command)

    export = commands.add_parser("export", help="export a conversation as Markdown or JSON")
    export.add_argument("id", type=int, help="conversation id")
    export.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    export.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")
    export.set_defaults(func=export_command)

    search = commands.add_parser("search", help="full-text search in titles and messages")
    search.add_argument("query", help="words to find; the last one may be the start of a word")
    search.add_argument("--limit", type=int, default=50, help="show at most this many hits (default 50)")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=search_command)

    importing = commands.add_parser(
        "import", help="import a conversation from a JSON export ('-' reads stdin)"
    )
    importing.add_argument("file", help="a file written by `conversations export --format json`")
    importing.add_argument("--json", action="store_true", help="print the new conversation as JSON")
    importing.set_defaults(func=import_command)


def _open_store() -> ConversationStore:
    store = ConversationStore(get_paths().ensure().database_file, recover_interrupted=False)
    if store.warning:
        print(f"warning: {store.warning}", file=sys.stderr)
    return store


def _fail(message: str) -> int:
    print(f"llamadesk: error: {message}", file=sys.stderr)
    return 2


def _run(action: Callable[[ConversationStore], int]) -> int:
    try:
        with _open_store() as store:
            return action(store)
    except StoreError as exc:
        return _fail(str(exc))


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "title": conversation.title,
        "pinned": conversation.pinned,
        "model": conversation.model,
        "created": datetime.fromtimestamp(conversation.created_at).astimezone().isoformat(),
        "updated": datetime.fromtimestamp(conversation.updated_at).astimezone().isoformat(),
    }


def list_command(args: argparse.Namespace) -> int:
    def action(store: ConversationStore) -> int:
        conversations = store.list_conversations(limit=args.limit)
        if args.json:
            print(json.dumps([_summary(c) for c in conversations], indent=2, ensure_ascii=False))
            return 0
        if not conversations:
            print("No conversations yet.")
            return 0
        width = max(len(str(c.id)) for c in conversations)
        for c in conversations:
            pin = "*" if c.pinned else " "
            model = f"  [{c.model}]" if c.model else ""
            print(f"{c.id:>{width}} {pin} {_when(c.updated_at)}  {c.title}{model}")
        return 0

    return _run(action)


def show_command(args: argparse.Namespace) -> int:
    def action(store: ConversationStore) -> int:
        if args.json:
            print(json.dumps(store.export_json(args.id), indent=2, ensure_ascii=False))
            return 0
        conversation = store.get_conversation(args.id)
        print(f"# {conversation.title}")
        if conversation.system_prompt:
            print(f"\n[system]\n{conversation.system_prompt}")
        for message in store.active_path(args.id):
            label = message.role
            if message.sibling_count > 1:
                label += f" {message.sibling_index}/{message.sibling_count}"
            if message.status != "complete":
                label += f", {message.status}"
            print(f"\n[{label}]\n{message.content}")
        return 0

    return _run(action)


def export_command(args: argparse.Namespace) -> int:
    def action(store: ConversationStore) -> int:
        if args.format == "json":
            text = json.dumps(store.export_json(args.id), indent=2, ensure_ascii=False) + "\n"
        else:
            text = store.export_markdown(args.id)
        if args.out is None:
            sys.stdout.write(text)
            return 0
        try:
            atomic_write_text(args.out, text)
        except OSError as exc:
            return _fail(f"could not write {args.out}: {exc.strerror or exc}")
        print(f"Exported conversation {args.id} to {args.out}")
        return 0

    return _run(action)


def search_command(args: argparse.Namespace) -> int:
    def action(store: ConversationStore) -> int:
        hits = store.search(args.query, limit=args.limit)
        if args.json:
            rows = [
                {
                    "conversation_id": h.conversation_id,
                    "message_id": h.message_id,
                    "title": h.title,
                    "snippet": h.snippet,
                }
                for h in hits
            ]
            print(json.dumps(rows, indent=2, ensure_ascii=False))
            return 0
        if not hits:
            print("No matches.")
            return 0
        for hit in hits:
            where = (
                f"{hit.conversation_id}"
                if hit.message_id is None
                else f"{hit.conversation_id}#{hit.message_id}"
            )
            snippet = " ".join(hit.snippet.split())
            print(f"{where}  {hit.title}: {snippet}")
        return 0

    return _run(action)


def import_command(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return _fail(f"could not read {args.file}: {reason}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return _fail(f"{args.file} is not valid JSON: {exc}")

    def action(store: ConversationStore) -> int:
        conversation = store.import_json(data)
        if args.json:
            print(json.dumps(_summary(conversation), indent=2, ensure_ascii=False))
        else:
            print(f"Imported conversation {conversation.id}: {conversation.title}")
        return 0

    return _run(action)
