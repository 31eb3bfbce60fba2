"""`llamadesk --version` and `--self-test`: what is installed, and whether it works on this machine."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .. import __version__
from ..paths import get_paths
from .resolve import resolve_model


def version_text() -> str:
    """App version, llama-cpp-python version and the GPU backends compiled into it."""
    from ..engine.hardware import compiled_backends
    from ..engine.runtime import version as llama_version

    backends = ", ".join(compiled_backends()) or "none (CPU only)"
    return f"LlamaDesk {__version__}\nllama-cpp-python {llama_version()}\nGPU backends: {backends}"


def version_command(_args: argparse.Namespace) -> int:
    """``llamadesk --version``."""
    print(version_text())
    return 0


def self_test_command(args: argparse.Namespace) -> int:
    """``llamadesk --self-test [MODEL]``."""
    return self_test(args.self_test)


def self_test(model: str) -> int:
    """Load a model, generate a few tokens, check the folders are writable; print a report."""
    import platform
    import tempfile
    import time

    from ..chat import chat_format_for
    from ..engine import Engine, detect_hardware
    from ..settings import GenerationSettings, RuntimeSettings

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
        from ..chat.store import ConversationStore

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
    from ..logs import log_file

    print(version_text())
    print(f"Python {platform.python_version()} on {platform.platform()}")
    print(f"Log file: {log_file(paths.log_dir)} (attach it to a bug report)")
    for name, ok, detail in results:
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    failed = [name for name, ok, _ in results if not ok]
    print("self-test passed" if not failed else f"self-test FAILED: {', '.join(failed)}")
    return 0 if not failed else 1
