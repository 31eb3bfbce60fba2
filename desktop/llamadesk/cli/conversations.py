"""`llamadesk conversations ...`: list, show, export, search and import saved conversations."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..chat.store import Conversation, ConversationStore, StoreError
from ..files import atomic_write_text
from ..paths import get_paths
from .common import fail, shown, warn


def _open_store() -> ConversationStore:
    store = ConversationStore(get_paths().ensure().database_file, recover_interrupted=False)
    if store.warning:
        warn(store.warning)
    return store


def _run(action: Callable[[ConversationStore], int]) -> int:
    try:
        with _open_store() as store:
            return action(store)
    except StoreError as exc:
        return fail(str(exc))


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
            print(f"{c.id:>{width}} {pin} {_when(c.updated_at)}  {shown(c.title)}{shown(model)}")
        return 0

    return _run(action)


def show_command(args: argparse.Namespace) -> int:
    def action(store: ConversationStore) -> int:
        if args.json:
            print(json.dumps(store.export_json(args.id), indent=2, ensure_ascii=False))
            return 0
        conversation = store.get_conversation(args.id)
        print(f"# {shown(conversation.title)}")
        if conversation.system_prompt:
            print(f"\n[system]\n{shown(conversation.system_prompt, block=True)}")
        for message in store.active_path(args.id):
            label = message.role
            if message.sibling_count > 1:
                label += f" {message.sibling_index}/{message.sibling_count}"
            if message.status != "complete":
                label += f", {message.status}"
            print(f"\n[{label}]\n{shown(message.content, block=True)}")
        return 0

    return _run(action)


def export_command(args: argparse.Namespace) -> int:
    def action(store: ConversationStore) -> int:
        if args.format == "json":
            text = json.dumps(store.export_json(args.id), indent=2, ensure_ascii=False) + "\n"
        else:
            text = store.export_markdown(args.id)
        if args.out is None or args.out == "-":
            sys.stdout.write(text)
            return 0
        target = Path(args.out).expanduser()
        try:
            # Through a symlink to its target, keeping an existing file's mode; never over a FIFO or device.
            atomic_write_text(target, text)
        except OSError as exc:
            return fail(f"could not write {args.out}: {exc.strerror or exc}")
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
            print(f"{where}  {shown(hit.title)}: {shown(snippet)}")
        return 0

    return _run(action)


def import_command(args: argparse.Namespace) -> int:
    from ..chat.store import parse_import_bytes, read_import_file, read_import_stream

    try:
        if args.file == "-":
            buffer = getattr(sys.stdin, "buffer", None)
            if buffer is not None:  # at most the import size limit is read
                data = read_import_stream(buffer)
            else:
                data = parse_import_bytes(sys.stdin.read().encode("utf-8", "replace"), "standard input")
        else:
            data = read_import_file(Path(args.file).expanduser())
    except StoreError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"could not read {args.file}: {exc.strerror or exc}")

    def action(store: ConversationStore) -> int:
        conversation = store.import_json(data)
        if args.json:
            print(json.dumps(_summary(conversation), indent=2, ensure_ascii=False))
        else:
            print(f"Imported conversation {conversation.id}: {shown(conversation.title)}")
        return 0

    return _run(action)
