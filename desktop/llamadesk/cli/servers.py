"""`llamadesk servers list|add|remove`, and `llamadesk chat --server`: remote OpenAI-compatible servers.

The list lives in the settings (shared with the window's Preferences → Remote servers); API keys
live in the system keyring, one per server. A remote chat works like a local one (the same messages,
output modes and storage), except that the server applies its own chat template.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from ..chat.prompt import build_messages
from ..paths import get_paths
from ..remote.errors import RemoteError
from ..remote.registry import (
    RemoteModel,
    add_server,
    check_all,
    check_server,
    find_server,
    remove_server,
    secret_name,
)
from ..remote.urls import default_name, normalize_url
from ..secrets import SecretStore
from ..settings import RemoteServer, Settings, SettingsStore
from .common import EXIT_INTERRUPTED, CliError, fail, note, shown, warn

if TYPE_CHECKING:
    from ..remote.client import RemoteReply

__all__ = ["cmd_chat_remote", "cmd_servers_add", "cmd_servers_list", "cmd_servers_remove"]

POLL_S = 0.1


def _settings() -> tuple[SettingsStore, Settings, SecretStore]:
    paths = get_paths().ensure()
    store = SettingsStore(paths.settings_file)
    settings = store.load()
    if store.warning:
        warn(store.warning)
    return store, settings, SecretStore(paths.config_dir)


def cmd_servers_list(args: argparse.Namespace) -> int:
    """Every remote server, whether it answers now, and its models."""
    _, settings, secrets = _settings()
    servers = settings.remote_servers
    statuses = check_all(servers, secrets) if servers and not args.no_check else []
    if args.json:
        out = []
        for index, server in enumerate(servers):
            item: dict[str, Any] = {"name": server.name, "url": server.url}
            if statuses:
                status = statuses[index]
                item.update(reachable=status.reachable, models=status.models, error=status.error or None)
            out.append(item)
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    if not servers:
        note("no remote servers; add one with: llamadesk servers add URL [--name NAME] [--api-key KEY]")
        return 0
    for index, server in enumerate(servers):
        print(f"{shown(server.name)}  {shown(server.url)}")
        if not statuses:
            continue
        status = statuses[index]
        if not status.reachable:
            print(f"  not reachable: {shown(status.error)}")
            continue
        print(f"  reachable, {len(status.models)} model(s)")
        for model in status.models:
            print(f"    {shown(model)}")
    return 0


def cmd_servers_add(args: argparse.Namespace) -> int:
    """Add a server after checking its address (and that it answers as an OpenAI API); its key goes
    to the keyring. A server that does not answer now is added with a warning."""
    store, settings, secrets = _settings()
    servers = add_server(settings.remote_servers, args.url, args.name or "")
    added = servers[-1]
    key = (args.api_key or "").strip() or None
    if key is not None and any(char.isspace() for char in key):
        raise CliError("an API key has no spaces or line breaks")
    if not args.no_check:
        status = check_server(added, key)
        if not status.reachable and status.kind != "unreachable":
            raise CliError(f"{status.error} (add it anyway with --no-check)")
        if not status.reachable:
            warn(f"{status.error} It is added anyway.")
        else:
            print(f"{shown(added.name)}: reachable, {len(status.models)} model(s)")
    settings = settings.model_copy(update={"remote_servers": servers})
    store.save(settings)
    if key is not None:
        try:
            secrets.set(secret_name(added.name), key)
        except OSError as exc:
            return fail(f"the server was added, but its API key could not be saved: {exc}")
    print(f"added {shown(added.name)} ({shown(added.url)})")
    return 0


def cmd_servers_remove(args: argparse.Namespace) -> int:
    """Forget a server (by name or address) and its API key."""
    store, settings, secrets = _settings()
    servers, removed = remove_server(settings.remote_servers, args.name)
    store.save(settings.model_copy(update={"remote_servers": servers}))
    secrets.delete(secret_name(removed.name))
    print(f"removed {shown(removed.name)} ({shown(removed.url)})")
    return 0


# -- chat --------------------------------------------------------------------------------------


def _server_for(
    args: argparse.Namespace, settings: Settings, secrets: SecretStore
) -> tuple[RemoteServer, str | None]:
    """The server ``--server`` names (a listed one by name or address, else any URL) and its key."""
    listed = find_server(settings.remote_servers, args.server)
    if listed is not None:
        key = args.api_key or secrets.get(secret_name(listed.name))
        return listed, key
    url = normalize_url(args.server)
    return RemoteServer(name=default_name(url), url=url), args.api_key


def _model_for(args: argparse.Namespace, server: RemoteServer, key: str | None) -> str:
    """The model id: ``-m``, or the server's only model when ``-m`` was left out."""
    if args.model and args.model != "starter":
        return str(args.model)
    status = check_server(server, key)
    if not status.reachable:
        raise RemoteError(status.error, status.kind, server=server.name)
    if len(status.models) == 1:
        return status.models[0]
    raise CliError(
        f"choose a model of {server.name} with -m: " + (", ".join(status.models) or "it lists none")
    )


def cmd_chat_remote(args: argparse.Namespace) -> int:
    """`llamadesk chat --server URL`: the reply from a remote server, shown and stored as a local one."""
    from ..remote.client import RemoteClient
    from .chat import _generation_settings, _open_session, _read_prompt, _show, _Thinking

    prompt = _read_prompt(args)
    paths = get_paths().ensure()
    _, settings, secrets = _settings()
    for flag in ("ctx", "gpu_layers", "template"):
        if getattr(args, flag, None) is not None and not args.json:
            note(f"--{flag.replace('_', '-')} does not apply to a remote server; it is ignored")
    server, key = _server_for(args, settings, secrets)
    model = RemoteModel(server.name, server.url, _model_for(args, server, key))
    generation = _generation_settings(args, settings.generation)

    session, system, path = _open_session(args, paths)
    messages = build_messages(system, path, new_user_message=prompt).messages
    thinking = _Thinking(bool(getattr(args, "show_thinking", False)))
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()
    client = RemoteClient(server.url, name=server.name, api_key=key)
    interrupted = False

    def run() -> None:
        try:
            reply = client.chat(
                model.model,
                messages,
                generation,
                on_text=lambda piece: events.put(("text", piece)),
                stop=stop,
            )
        except RemoteError as exc:
            events.put(("error", exc))
        else:
            events.put(("done", reply))

    def on_ctrl_c(*_: object) -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()
        client.abort()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    worker = threading.Thread(target=run, name="remote-chat", daemon=True)
    answer: list[str] = []
    result: RemoteReply | None = None
    error: RemoteError | None = None
    try:
        worker.start()
        while True:
            try:
                kind, value = events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if kind == "error":
                error = value
                break
            if kind == "done":
                result = value
                break
            if interrupted:
                continue
            if session is not None and session.reply is None:  # stored once the server answers
                session.begin(prompt, model.display_name, system)
            _show(thinking.splitter.feed(value), thinking, session, answer, args.json)
        _show(thinking.splitter.finish(), thinking, session, answer, args.json)
        if session is not None and result is not None and session.reply is None and not interrupted:
            session.begin(prompt, model.display_name, system)  # a reply with no text is stored too
        if session is not None and session.reply is not None and not session.reply.finished:
            session.reply.set_thinking(thinking.splitter.thinking)
            _finish(session, result, error, interrupted, thinking.seconds())
    finally:
        signal.signal(signal.SIGINT, previous)
        stop.set()
        client.close()
        worker.join(10)
        if session is not None:
            session.store.close()
    if error is not None:
        if interrupted:
            return EXIT_INTERRUPTED
        raise error
    assert result is not None
    stats = result.stats
    if args.json:
        out: dict[str, Any] = {
            "text": "".join(answer),
            "reasoning": thinking.splitter.thinking,
            "prompt_tokens": stats.prompt_tokens,
            "cached_tokens": 0,
            "dropped_messages": 0,
            "shifted_tokens": 0,
            "restored_from": "",
            "completion_tokens": stats.completion_tokens,
            "ttft_s": round(stats.ttft_s, 4),
            "tokens_per_s": round(stats.tokens_per_s, 2),
            "stop_reason": stats.stop_reason.value,
            "model": model.display_name,
            "server": server.url,
            "error": stats.error,
        }
        if session is not None and session.conversation_id is not None:
            out["conversation_id"] = session.conversation_id
        print(json.dumps(out, ensure_ascii=False))
    else:
        sys.stdout.write("\n")
        if session is not None and session.conversation_id is not None:
            print(f"llamadesk: conversation {session.conversation_id}", file=sys.stderr)
    if stats.error:
        return fail(stats.error + " The part received is kept.")
    return EXIT_INTERRUPTED if interrupted else 0


def _finish(
    session: Any,
    result: RemoteReply | None,
    error: RemoteError | None,
    interrupted: bool,
    thinking_s: float | None,
) -> None:
    """Mark the stored reply as it ended: complete, stopped (Ctrl+C) or failed (the part received kept)."""
    from ..chat.store import reply_status

    extra = {} if thinking_s is None else {"thinking_s": thinking_s}
    reply = session.reply
    if result is not None:
        data = {**result.stats.to_dict(), **extra}
        if interrupted:
            data["stop_reason"] = "user_stop"
        reply.finish("stopped" if interrupted else reply_status(str(data["stop_reason"])), data)
    elif error is not None and not interrupted:
        reply.finish("failed", {"error": str(error)})
    else:
        reply.finish("stopped", None)
