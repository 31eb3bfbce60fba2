"""Headless commands: inspect a model, chat in the terminal, manage conversations and models.

Errors print one line on stderr and exit with status 2; there are no tracebacks for
things a user can cause. Ctrl+C exits with status 130 (a reply cut short is kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import LlamaDeskError
from .paths import STARTER_MODEL_NAME, get_paths, starter_model_path

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells expect after Ctrl+C


class CliError(LlamaDeskError):
    """A command-line problem the user can fix."""


def _fail(message: str) -> int:
    print(f"llamadesk: error: {message}", file=sys.stderr)
    return EXIT_ERROR


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"llamadesk: error: {message}\n")


def resolve_model(name: str) -> Path:
    """A model given as a path, a library key or a library name."""
    candidate = Path(name).expanduser()
    if candidate.exists():
        return candidate
    lowered = name.strip().lower()
    starter = starter_model_path()
    if starter and lowered in {"starter", STARTER_MODEL_NAME.lower(), starter.stem.lower()}:
        return starter
    from .hub.library import ModelLibrary

    found = ModelLibrary(get_paths().ensure()).find(name)
    if found is not None:
        return Path(found.path)
    if any(sep in name for sep in ("/", "\\")) or name.endswith(".gguf"):
        raise CliError(f"model file not found: {name}")
    raise CliError(f"no model named {name!r} in the library (see `llamadesk models list`)")


def cmd_inspect(args: argparse.Namespace) -> int:
    from .engine import detect_hardware, inspect_gguf, plan_fit

    info = inspect_gguf(resolve_model(args.path))
    hw = detect_hardware()
    plan = plan_fit(info, hw)
    if args.json:
        data = info.as_dict()
        data["fit"] = {
            "verdict": plan.verdict,
            "n_gpu_layers": plan.n_gpu_layers,
            "n_ctx": plan.n_ctx,
            "max_ctx": plan.max_ctx,
            "memory_bytes": plan.estimate.total,
            "summary": plan.summary,
        }
        data["hardware"] = {
            "backend": hw.backend,
            "gpu_offload": hw.gpu_offload,
            "total_ram": hw.total_ram,
            "available_ram": hw.available_ram,
            "gpus": [g.__dict__ for g in hw.gpus],
        }
        print(json.dumps(data, indent=2))
        return 0
    params = f"{info.parameter_count / 1e9:.2f} B" if info.parameter_count else "unknown"
    bpw = f"{info.bits_per_weight:.2f}" if info.bits_per_weight else "?"
    rows = [
        ("File", str(info.path)),
        ("Size", f"{info.file_size / 1024**2:,.1f} MiB"),
        ("Name", info.name or "-"),
        ("Architecture", info.architecture),
        ("Parameters", params),
        ("Quantization", f"{info.file_type} ({bpw} bits per weight)"),
        ("Trained context", f"{info.context_length:,}" if info.context_length else "unknown"),
        ("Layers", str(info.block_count or "?")),
        ("Embedding size", str(info.embedding_length or "?")),
        ("Attention heads", f"{info.head_count or '?'} (KV {info.head_count_kv or '?'})"),
        ("Chat template", "yes" if info.chat_template else "no (ChatML fallback)"),
        ("This machine", hw.describe()),
        ("Fit", f"{plan.label}: {plan.summary}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _generation_settings(args: argparse.Namespace, base: Any) -> Any:
    from .settings import validated_update

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


def _template_override(args: argparse.Namespace, settings: Any, model_path: Path) -> str | None:
    """``--template FILE``, else the template the user saved for this model, else None."""
    if args.template:
        try:
            return Path(args.template).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"can't read the template file {args.template}: {exc}") from exc
    from .hub.library import ModelLibrary

    found = ModelLibrary(get_paths().ensure()).find(str(model_path))
    key = str(found.key) if found is not None else str(model_path)
    return settings.template_overrides.get(key) or None


def _read_prompt(args: argparse.Namespace) -> str:
    """The message: the argument, or stdin when the argument is ``-`` or left out and text is piped in."""
    prompt = args.prompt
    if prompt is None or prompt == "-":
        if prompt is None and (sys.stdin is None or sys.stdin.isatty()):
            raise CliError(
                'give a message (llamadesk chat "Hello") or pipe one in (echo Hello | llamadesk chat)'
            )
        try:
            prompt = sys.stdin.read() if sys.stdin is not None else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"can't read the message from stdin: {exc}") from exc
    prompt = str(prompt).strip()
    if not prompt:
        raise CliError("the message is empty")
    return prompt


def cmd_chat(args: argparse.Namespace) -> int:
    from .chat import chat_format_for, fit_context
    from .engine import Engine, EngineError
    from .settings import SettingsStore, validated_update

    prompt = _read_prompt(args)
    paths = get_paths().ensure()
    settings_store = SettingsStore(paths.settings_file)
    settings = settings_store.load()
    if settings_store.warning:
        print(f"llamadesk: warning: {settings_store.warning}", file=sys.stderr)
    model_path = resolve_model(args.model)
    generation = _generation_settings(args, settings.generation)
    runtime_changes: dict[str, Any] = {}
    if args.ctx is not None:
        runtime_changes["n_ctx"] = args.ctx
    if args.gpu_layers is not None:
        runtime_changes["n_gpu_layers"] = args.gpu_layers
    runtime = validated_update(settings.runtime, **runtime_changes)
    override = _template_override(args, settings, model_path)

    store = None
    conversation = None
    history: list[dict[str, str]] = []
    system = args.system
    if args.conversation is not None or args.new:
        from .chat.store import ConversationStore, reply_status

        store = ConversationStore(paths.database_file)
        if args.conversation is not None:
            conversation = store.get_conversation(args.conversation)
            if system is None:
                system = conversation.system_prompt
            history = [
                {"role": m.role, "content": m.content}
                for m in store.active_path(conversation.id)
                if m.role in ("user", "assistant") and m.status != "failed"
            ]
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(history)
    messages.append({"role": "user", "content": prompt})

    engine = Engine()
    stop = threading.Event()
    # Ctrl+C stops the reply (what was written is kept) or cancels loading; the exit status is then 130,
    # so a shell loop around `llamadesk chat` stops too.
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        try:
            engine.load(model_path, runtime, progress=lambda _fraction: not stop.is_set())
        except EngineError:
            if stop.is_set():
                return EXIT_INTERRUPTED
            raise
        assert engine.info is not None
        fmt = chat_format_for(
            engine.info.chat_template, engine.info.bos_token, engine.info.eos_token, override=override
        )
        if fmt.is_fallback and not args.json:
            print("llamadesk: note: the model has no chat template; using ChatML", file=sys.stderr)
        reserve = min(generation.max_tokens, engine.n_ctx // 2)
        fit = fit_context(fmt, messages, engine.tokenize, engine.n_ctx - reserve)
        if fit.dropped and not args.json:
            print(
                f"llamadesk: note: {len(fit.dropped)} older messages did not fit the context", file=sys.stderr
            )
        result = engine.generate(fit.prompt_tokens, generation, stop_event=stop, extra_stop=fmt.stop_strings)
        if stop.is_set():
            return EXIT_INTERRUPTED
        # Stored only now that the model is loaded and the prompt fits: a failed start leaves no trace.
        reply = None
        if store is not None:
            if conversation is None:
                conversation = store.create_conversation(model=model_path.name, system_prompt=system)
            store.add_message(conversation.id, "user", prompt)
            reply = store.stream_reply(conversation.id, model=model_path.name)
        try:
            for piece in result:
                if reply is not None:
                    reply.append(piece)
                if not args.json:
                    sys.stdout.write(piece)
                    sys.stdout.flush()
        finally:
            if reply is not None and not reply.finished:
                stats = result.stats
                if stats is not None:
                    reply.finish(reply_status(stats.stop_reason.value), stats.to_dict())
                else:  # the output closed under us (a broken pipe): keep what was written
                    reply.finish("stopped", None)
        stats = result.stats
        assert stats is not None
        if args.json:
            out = {
                "text": result.text,
                "prompt_tokens": stats.prompt_tokens,
                "cached_tokens": stats.cached_tokens,
                "completion_tokens": stats.completion_tokens,
                "ttft_s": round(stats.ttft_s, 4),
                "tokens_per_s": round(stats.tokens_per_s, 2),
                "stop_reason": stats.stop_reason.value,
                "model": str(model_path),
            }
            if conversation is not None:
                out["conversation_id"] = conversation.id
            print(json.dumps(out, ensure_ascii=False))
        else:
            sys.stdout.write("\n")
            if conversation is not None:
                print(f"llamadesk: conversation {conversation.id}", file=sys.stderr)
        if stats.error:
            return _fail(stats.error)
        return EXIT_INTERRUPTED if stop.is_set() else 0
    finally:
        signal.signal(signal.SIGINT, previous)
        engine.unload()
        if store is not None:
            store.close()


def version_text() -> str:
    """App version, llama-cpp-python version and the GPU backends compiled into it."""
    from .engine.hardware import compiled_backends
    from .engine.runtime import version as llama_version

    backends = ", ".join(compiled_backends()) or "none (CPU only)"
    return f"LlamaDesk {__version__}\nllama-cpp-python {llama_version()}\nGPU backends: {backends}"


def self_test(model: str) -> int:
    """Load a model, generate a few tokens, check the folders are writable; print a report."""
    import platform
    import tempfile
    import time

    from .chat import chat_format_for
    from .engine import Engine, detect_hardware
    from .settings import GenerationSettings, RuntimeSettings

    results: list[tuple[str, bool, str]] = []

    def check(name: str, action: Callable[[], str]) -> None:
        try:
            results.append((name, True, action()))
        except Exception as exc:  # a self-test reports every failure, whatever it is
            results.append((name, False, str(exc) or type(exc).__name__))

    paths = get_paths()

    def folders() -> str:
        paths.ensure()
        for folder in (paths.config_dir, paths.data_dir, paths.models_dir):
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".selftest-"):
                pass
        return f"config {paths.config_dir}, data {paths.data_dir}"

    def store() -> str:
        from .chat.store import ConversationStore

        conversations = ConversationStore(paths.database_file)
        try:
            return f"{conversations.count_conversations()} conversations in {paths.database_file.name}"
        finally:
            conversations.close()

    def generate() -> str:
        engine = Engine()
        started = time.perf_counter()
        engine.load(resolve_model(model), RuntimeSettings(n_ctx=512))
        try:
            assert engine.info is not None
            fmt = chat_format_for(engine.info.chat_template, engine.info.bos_token, engine.info.eos_token)
            prompt = fmt.render([{"role": "user", "content": "Say hello."}])
            gen = engine.generate(
                prompt, GenerationSettings(max_tokens=8, seed=1), extra_stop=fmt.stop_strings
            )
            text = "".join(gen)
            assert gen.stats is not None
            if gen.stats.error or gen.stats.completion_tokens == 0:
                raise RuntimeError(gen.stats.error or "the model produced no tokens")
            elapsed = time.perf_counter() - started
            return (
                f"{engine.info.display_name} on {engine.backend}: {gen.stats.completion_tokens} tokens at "
                f"{gen.stats.tokens_per_s:.0f} tok/s, {elapsed:.1f} s in all ({text.strip()!r})"
            )
        finally:
            engine.unload()

    check("folders writable", folders)
    check("conversation store", store)
    check("hardware", lambda: detect_hardware().describe())
    check("model loads and generates", generate)
    print(version_text())
    print(f"Python {platform.python_version()} on {platform.platform()}")
    for name, ok, detail in results:
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    failed = [name for name, ok, _ in results if not ok]
    print("self-test passed" if not failed else f"self-test FAILED: {', '.join(failed)}")
    return 0 if not failed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llamadesk", description="Chat with local GGUF models, offline.")
    parser.add_argument("--version", action="store_true", help="print versions and the compiled GPU backend")
    parser.add_argument(
        "--self-test",
        nargs="?",
        const="starter",
        metavar="MODEL",
        help="load the starter model (or MODEL), generate a few tokens, check folders; exit 0 or 1",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (llama.cpp's log too)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("inspect", help="show a GGUF model's facts and whether it fits this machine")
    p.add_argument("path", help="a .gguf file or a model name from the library")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("chat", help="send one message and stream the reply")
    p.add_argument("-m", "--model", default="starter", help="a .gguf path or a library model name")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--min-p", type=float)
    p.add_argument("--repeat-penalty", type=float)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--ctx", type=int, help="context length in tokens (0 = automatic)")
    p.add_argument("--gpu-layers", type=int, help="layers on the GPU (-1 all, 0 none, -2 automatic)")
    p.add_argument("--template", metavar="FILE", help="a Jinja chat template to use instead of the model's")
    p.add_argument("--json", action="store_true", help="print one JSON object with the reply and its stats")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--conversation", type=int, metavar="ID", help="continue a stored conversation")
    group.add_argument("--new", action="store_true", help="start and store a new conversation")
    p.add_argument("prompt", nargs="?", help="your message; '-' or none reads it from stdin (e.g. a pipe)")
    p.set_defaults(func=cmd_chat)

    for module, hook in (
        ("llamadesk.chat.cli", "add_conversation_commands"),
        ("llamadesk.hub.cli", "add_hub_commands"),
    ):
        try:
            register: Callable[[Any], None] = getattr(__import__(module, fromlist=[hook]), hook)
        except (ImportError, AttributeError):
            continue
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("llama.cpp").setLevel(logging.CRITICAL)
    if args.version:
        print(version_text())
        return 0
    if args.self_test:
        return self_test(args.self_test)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except LlamaDeskError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
