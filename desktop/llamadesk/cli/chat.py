"""`llamadesk chat`: one message, the reply streamed to the terminal, optionally stored.

The model runs in the same inference service the window uses; this command is one more client
of it. Nothing is stored until the model is loaded and the prompt fits, so a failed start
leaves no trace; Ctrl+C stops the reply, keeps exactly what was printed and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# What every chat needs, imported with the module (the command line imports it with the
# garbage collector paused, see ``llamadesk.cli.main``); the conversation store only with --new
# or --conversation.
from ..chat.prompt import build_messages
from ..engine.service import ChatResult, InferenceService
from ..paths import get_paths
from ..settings import GenerationSettings, Settings, SettingsStore, validated_update
from .common import EXIT_INTERRUPTED, CliError, fail, note, read_stdin_text, warn
from .resolve import ResolvedModel, library_key, models_folder, resolve, resolve_model

if TYPE_CHECKING:
    from ..chat.store import ConversationStore, StreamingReply
    from ..engine.service import Job

__all__ = ["cmd_chat", "resolve_model"]

POLL_S = 0.1  # how often the waiting main thread wakes, so Ctrl+C is noticed at once


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

    def begin(self, prompt: str, model: str, system: str | None) -> None:
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(model=model, system_prompt=system).id
        user = self.store.add_message(self.conversation_id, "user", prompt, parent_id=self.leaf_id)
        self.reply = self.store.stream_reply(self.conversation_id, parent_id=user.id, model=model)


def cmd_chat(args: argparse.Namespace) -> int:
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
    runtime = validated_update(settings.runtime, **runtime_changes)
    override = _template_override(args, settings, model, models_dir)

    session: _Session | None = None
    system = args.system
    path: list[Any] = []
    if args.conversation is not None or args.new:
        from ..chat.store import ConversationStore

        store = ConversationStore(paths.database_file)
        session = _Session(store, None, None)
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
    # The branch the user is on, then the new message: the same rule as the window's.
    messages = build_messages(system, path, new_user_message=prompt).messages

    service = InferenceService()
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

        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        job = service.chat(
            messages,
            generation,
            on_fit=lambda fit: events.put(("fit", fit)),
            on_text=lambda piece: events.put(("text", piece)),
            client="cli",
        )
        running.append(job)
        job.add_done_callback(lambda finished: events.put(("done", finished)))
        shown: list[str] = []
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
                    continue
                if session is not None and session.reply is not None:
                    session.reply.append(value)
                shown.append(value)
                if not args.json:
                    sys.stdout.write(value)
                    sys.stdout.flush()
        finally:
            job.stop()
            job.wait()
            if session is not None and session.reply is not None and not session.reply.finished:
                _finish(session.reply, job, interrupted)
        if job.error is not None:
            if interrupted:
                return EXIT_INTERRUPTED
            raise job.error
        result: ChatResult = job.result
        stats = result.stats
        if args.json:
            out = {
                "text": "".join(shown),
                "prompt_tokens": stats.prompt_tokens,
                "cached_tokens": stats.cached_tokens,
                "completion_tokens": stats.completion_tokens,
                "ttft_s": round(stats.ttft_s, 4),
                "tokens_per_s": round(stats.tokens_per_s, 2),
                "stop_reason": stats.stop_reason.value,
                "model": str(model_path),
            }
            if session is not None and session.conversation_id is not None:
                out["conversation_id"] = session.conversation_id
            print(json.dumps(out, ensure_ascii=False))
        else:
            sys.stdout.write("\n")
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


def _finish(reply: StreamingReply, job: Job, interrupted: bool) -> None:
    """Mark the stored reply as it ended (it holds exactly the text shown), with the engine's stats."""
    from ..chat.store import reply_status

    if job.result is not None and not interrupted:
        stats = job.result.stats
        reply.finish(reply_status(stats.stop_reason.value), stats.to_dict())
    elif job.result is not None:  # Ctrl+C: kept as stopped, with the stats of what was written
        data = job.result.stats.to_dict()
        data["stop_reason"] = "user_stop"
        reply.finish("stopped", data)
    elif job.error is not None and not interrupted:
        reply.finish("failed", {"error": str(job.error)})
    else:  # the output closed under us (a broken pipe) or Ctrl+C: keep what was written
        reply.finish("stopped", None)
