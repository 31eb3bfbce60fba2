"""`llamadesk chat`: one message, the reply streamed to the terminal, optionally stored.

The model runs in the same inference service the window uses; this command is one more client
of it. A reasoning model's thinking is split from its answer: stored apart, given as ``reasoning``
with ``--json``, and printed (dimmed on a terminal) only with ``--show-thinking``.
Nothing is stored until the model is loaded and the prompt fits, so a failed start
leaves no trace; Ctrl+C stops the reply, keeps exactly what was printed and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

# What every chat needs, imported with the module (the command line imports it with the
# garbage collector paused, see ``llamadesk.cli.main``); the conversation store only with --new
# or --conversation.
from ..chat.prompt import build_messages
from ..chat.reasoning import ReasoningSplitter, starts_in_thinking, uses_channels
from ..chat.templates import apply_thinking
from ..engine.service import ChatResult, InferenceService
from ..engine.states import ConversationStates
from ..paths import Paths, get_paths
from ..settings import GenerationSettings, Settings, SettingsStore, validated_update
from .common import EXIT_INTERRUPTED, CliError, fail, note, read_stdin_text, shown, warn
from .resolve import ResolvedModel, library_key, models_folder, resolve, resolve_model

if TYPE_CHECKING:
    from ..chat.store import ConversationStore, StreamingReply
    from ..engine.service import Job

__all__ = ["cmd_chat", "resolve_model"]

POLL_S = 0.1  # how often the waiting main thread wakes, so Ctrl+C is noticed at once
_DIM, _RESET = "\033[2m", "\033[0m"


class _Thinking:
    """The thinking of the reply being printed: split from the answer, stored, shown on request."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.splitter = ReasoningSplitter()
        self.parts: list[str] = []
        self.started: float | None = None
        self.ended: float | None = None
        self.tty = sys.stdout.isatty()

    def begin(self, prompt: str, template: str) -> None:
        self.splitter = ReasoningSplitter(
            start_in_thinking=starts_in_thinking(prompt), channels=uses_channels(template)
        )

    def write(self, text: str) -> None:
        """Print a piece of thinking (only with --show-thinking; dimmed on a terminal)."""
        self.parts.append(text)
        if self.show:
            sys.stdout.write(f"{_DIM}{shown(text, block=True)}{_RESET}" if self.tty else text)
            sys.stdout.flush()

    def answer_begins(self) -> None:
        if self.started is not None and self.ended is None:
            self.ended = time.monotonic()
            if self.show and self.parts:
                sys.stdout.write("\n\n")

    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return round((self.ended if self.ended is not None else time.monotonic()) - self.started, 2)


def _generation_settings(args: argparse.Namespace, base: GenerationSettings) -> GenerationSettings:
    changes = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "min_p": args.min_p,
        "repeat_penalty": args.repeat_penalty,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
    }
    return validated_update(base, **{k: v for k, v in changes.items() if v is not None})


def _template_override(
    args: argparse.Namespace, settings: Settings, model: ResolvedModel, models_dir: Path
) -> str | None:
    """``--template FILE``, else the template the user saved for this model, else None."""
    if args.template:
        from ..chat.templates import MAX_TEMPLATE_CHARS
        from ..files import read_regular_bytes

        try:  # never waits on a FIFO, never reads more than a template may be
            data = read_regular_bytes(Path(args.template).expanduser(), limit=4 * MAX_TEMPLATE_CHARS)
            return data.decode("utf-8")
        except OSError as exc:
            raise CliError(f"can't read the template file {args.template}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise CliError(f"the template file {args.template} is not UTF-8 text") from exc
    if not settings.template_overrides:  # nothing saved: no need to look the model up
        return None
    return settings.template_overrides.get(library_key(model, models_dir)) or None


def _read_prompt(args: argparse.Namespace) -> str:
    """The message: the argument, or stdin when the argument is ``-`` or left out and text is piped in."""
    prompt = args.prompt
    if prompt is None or prompt == "-":
        if prompt is None and (sys.stdin is None or sys.stdin.isatty()):
            raise CliError(
                'give a message (llamadesk chat "Hello") or pipe one in (echo Hello | llamadesk chat)'
            )
        try:
            prompt = read_stdin_text()
        except OSError as exc:
            raise CliError(f"can't read the message from stdin: {exc}") from exc
    prompt = str(prompt).strip()
    if not prompt:
        raise CliError("the message is empty")
    return prompt


class _Session:
    """The stored side of one CLI chat: the conversation, the user message and the streaming reply."""

    def __init__(self, store: ConversationStore, conversation_id: int | None, leaf_id: int | None) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.leaf_id = leaf_id
        self.reply: StreamingReply | None = None
        self.sources: Any = None  # the MessageSources the question is sent with (chat --docs)

    def begin(self, prompt: str, model: str, system: str | None) -> None:
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(model=model, system_prompt=system).id
        user = self.store.add_message(self.conversation_id, "user", prompt, parent_id=self.leaf_id)
        if self.sources is not None:
            self.store.set_message_sources(user.id, self.sources)
        self.reply = self.store.stream_reply(self.conversation_id, parent_id=user.id, model=model)


def _open_session(args: argparse.Namespace, paths: Paths) -> tuple[_Session | None, str | None, list[Any]]:
    """With ``--new`` or ``--conversation``: the stored session, the system prompt (``--system``, else
    the conversation's) and the branch the user is on; without either, nothing is stored."""
    system = args.system
    if args.conversation is None and not args.new:
        return None, system, []
    from ..chat.store import ConversationStore

    store = ConversationStore(paths.database_file)
    session = _Session(store, None, None)
    path: list[Any] = []
    if args.conversation is not None:
        try:
            conversation = store.get_conversation(args.conversation)
            path = store.active_path(conversation.id)
        except BaseException:
            store.close()
            raise
        session.conversation_id = conversation.id
        session.leaf_id = path[-1].id if path else None
        if system is None:
            system = conversation.system_prompt
    return session, system, path


def cmd_chat(args: argparse.Namespace) -> int:
    if getattr(args, "server", None):  # a remote OpenAI-compatible server instead of a local model
        from .servers import cmd_chat_remote

        return cmd_chat_remote(args)
    prompt = _read_prompt(args)
    paths = get_paths().ensure()
    settings_store = SettingsStore(paths.settings_file)
    settings = settings_store.load()
    if settings_store.warning:
        warn(settings_store.warning)
    models_dir = models_folder(settings, paths)
    model = resolve(args.model, models_dir=models_dir)
    model_path = model.path
    generation = _generation_settings(args, settings.generation)
    runtime_changes: dict[str, Any] = {}
    if args.ctx is not None:
        runtime_changes["n_ctx"] = args.ctx
    if args.gpu_layers is not None:
        runtime_changes["n_gpu_layers"] = args.gpu_layers
    if getattr(args, "workers", None) is not None:  # llama.cpp RPC workers (cli/worker.py)
        runtime_changes["workers"] = [w for w in args.workers.split(",") if w.strip()]
    runtime = validated_update(settings.runtime, **runtime_changes)
    if runtime.workers:
        from .worker import announce_workers

        announce_workers(model_path, runtime, quiet=args.json)
    override = _template_override(args, settings, model, models_dir)

    session, system, path = _open_session(args, paths)
    # The branch the user is on, then the new message: the same rule as the window's.
    docs = None  # --docs: the question is sent after numbered sources from these collections
    if getattr(args, "docs", None):
        from ..chat.sources import search_collections

        names = [name.strip() for name in args.docs.split(",") if name.strip()]
        docs = search_collections(
            paths.data_dir, names, prompt, n_ctx=runtime.n_ctx or 4096, reply_tokens=generation.max_tokens
        )
    contexts: dict[int, str] = {}  # earlier questions go with the sources stored with them, as in the window
    if session is not None:
        stored = session.store.message_sources([m.id for m in path])
        contexts = {i: found.context for i, found in stored.items()}
        session.sources = docs
    question = f"{docs.context}\n\n{prompt}" if docs is not None and docs.context else prompt
    built = build_messages(system, path, new_user_message=question, contexts=contexts)
    thought = {m.id: m.thinking for m in path if getattr(m, "thinking", "")}
    messages: list[dict[str, Any]] = [
        {**m, "thinking": thought[ids[0]]} if len(ids) == 1 and ids[0] in thought else dict(m)
        for m, ids in zip(built.messages, built.sources, strict=True)
    ]
    preset = settings.presets.get(library_key(model, models_dir)) if settings.presets else None
    thinking = _Thinking(bool(getattr(args, "show_thinking", False)))

    # Saved conversation states (the model's cache of recent chats) live in the data folder, shared
    # with the window: continuing a conversation in a new process reads only the new message.
    states = ConversationStates.in_folder(
        paths.data_dir / "states", disk_budget=settings.app.state_disk_budget_mb * 1024 * 1024
    )
    service = InferenceService(states=states)
    interrupted = False
    running: list[Job] = []

    def on_ctrl_c(*_: object) -> None:
        nonlocal interrupted
        interrupted = True
        for job in running:
            job.stop()

    # Ctrl+C stops the reply (what was written is kept) or cancels loading; the exit status is then 130,
    # so a shell loop around `llamadesk chat` stops too.
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        load = service.load(model_path, runtime, template_override=override, client="cli")
        running.append(load)
        while not load.wait(POLL_S):
            pass
        if interrupted:
            return EXIT_INTERRUPTED
        if load.error is not None:
            raise load.error
        if load.result.chat_format.is_fallback and not args.json:
            note("the model has no chat template; using ChatML")

        template = load.result.chat_format.template
        messages, variables = apply_thinking(template, messages, preset.thinking if preset else "")
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        job = service.chat(
            messages,
            generation,
            on_fit=lambda fit: events.put(("fit", fit)),
            on_text=lambda piece: events.put(("text", piece)),
            client="cli",
            variables=variables or None,
        )
        running.append(job)
        job.add_done_callback(lambda finished: events.put(("done", finished)))
        answer: list[str] = []
        try:
            while True:
                try:
                    kind, value = events.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if kind == "done":
                    break
                if interrupted:
                    continue  # the user pressed Ctrl+C: nothing more is shown or kept
                if kind == "fit":
                    if value.dropped and not args.json:
                        note(f"{len(value.dropped)} older messages did not fit the context")
                    if session is not None:  # stored only now that the model is loaded and the prompt fits
                        session.begin(prompt, model_path.name, system)
                    thinking.begin(value.prompt, template)
                    continue
                _show(thinking.splitter.feed(value), thinking, session, answer, args.json)
        finally:
            job.stop()
            job.wait()
            if not interrupted:
                _show(thinking.splitter.finish(), thinking, session, answer, args.json)
            if session is not None and session.reply is not None and not session.reply.finished:
                session.reply.set_thinking(thinking.splitter.thinking)
                _finish(session.reply, job, interrupted, thinking.seconds())
        if job.error is not None:
            if interrupted:
                return EXIT_INTERRUPTED
            raise job.error
        result: ChatResult = job.result
        stats = result.stats
        if args.json:
            out = {
                "text": "".join(answer),
                "reasoning": thinking.splitter.thinking,
                "prompt_tokens": stats.prompt_tokens,
                "cached_tokens": stats.cached_tokens,
                "dropped_messages": len(result.fit.dropped),
                "shifted_tokens": stats.shifted_tokens,
                "restored_from": stats.restored_from,
                "completion_tokens": stats.completion_tokens,
                "ttft_s": round(stats.ttft_s, 4),
                "tokens_per_s": round(stats.tokens_per_s, 2),
                "stop_reason": stats.stop_reason.value,
                "model": str(model_path),
            }
            if session is not None and session.conversation_id is not None:
                out["conversation_id"] = session.conversation_id
            if docs is not None:
                from dataclasses import asdict

                out["sources"] = [asdict(source) for source in docs.sources]
            print(json.dumps(out, ensure_ascii=False))
        else:
            sys.stdout.write("\n")
            if docs is not None:
                from ..chat.sources import sources_lines

                print("\n".join(["Sources:", *sources_lines(docs)]) if docs.sources else "(no sources found)")
            if session is not None and session.conversation_id is not None:
                print(f"llamadesk: conversation {session.conversation_id}", file=sys.stderr)
        if stats.error:
            return fail(stats.error)
        return EXIT_INTERRUPTED if interrupted else 0
    finally:
        signal.signal(signal.SIGINT, previous)
        service.close(timeout=10)
        if session is not None:
            session.store.close()


def _show(
    parts: list[tuple[str, str]],
    thinking: _Thinking,
    session: _Session | None,
    answer: list[str],
    as_json: bool,
) -> None:
    """Store and print the thinking and answer text the splitter handed back."""
    reply = session.reply if session is not None else None
    for kind, text in parts:
        if kind == "thinking":
            if thinking.started is None:
                thinking.started = time.monotonic()
            if reply is not None:
                reply.append_thinking(text)
            if not as_json:
                thinking.write(text)
            continue
        thinking.answer_begins()
        if reply is not None:
            reply.append(text)
        answer.append(text)
        if not as_json:
            sys.stdout.write(text)
            sys.stdout.flush()


def _finish(reply: StreamingReply, job: Job, interrupted: bool, thinking_s: float | None = None) -> None:
    """Mark the stored reply as it ended (it holds exactly the text shown), with the engine's stats."""
    from ..chat.store import reply_status

    extra = {} if thinking_s is None else {"thinking_s": thinking_s}
    if job.result is not None and not interrupted:
        stats = job.result.stats
        reply.finish(reply_status(stats.stop_reason.value), {**stats.to_dict(), **extra})
    elif job.result is not None:  # Ctrl+C: kept as stopped, with the stats of what was written
        data = job.result.stats.to_dict()
        data["stop_reason"] = "user_stop"
        reply.finish("stopped", {**data, **extra})
    elif job.error is not None and not interrupted:
        reply.finish("failed", {"error": str(job.error)})
    else:  # the output closed under us (a broken pipe) or Ctrl+C: keep what was written
        reply.finish("stopped", None)
