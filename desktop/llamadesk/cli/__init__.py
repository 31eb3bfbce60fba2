"""Headless commands: inspect a model, chat in the terminal, manage conversations and models.

The parser is declared here in one place and costs almost nothing to build: each command's
module (and whatever it needs: llama.cpp, SQLite, huggingface_hub) is imported only when that
command runs. Errors print one line on stderr and exit with status 2; there are no tracebacks
for things a user can cause. Ctrl+C exits with status 130 (a reply cut short is kept).

Start-up (the imports of a command, its settings) builds tens of thousands of objects that live
as long as the process and makes almost no garbage, yet Python's cyclic garbage collector walks
them again and again, and once more when the interpreter exits: about 60 ms of a one-shot
chat. So a command's module is imported with the collector paused, and when the process ends
with the command (the ``llamadesk`` program), what start-up built is frozen out of the
collector's sight; objects made while the command runs are collected as usual.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence

from ..errors import LlamaDeskError
from ..limits import MIN_CONTEXT
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    CliError,
    Parser,
    bounded_int,
    conversation_id,
    fail,
    limit,
    text_arg,
)

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "CliError", "build_parser", "main"]

log = logging.getLogger(__name__)

_TOKENS = bounded_int(1, 1_000_000, "a token count")
_CONTEXT = bounded_int(0, 1_048_576, "a context length")
_LAYERS = bounded_int(-2, 100_000, "a GPU layer count")
_SEED = bounded_int(-1, 2**31 - 1, "a seed")
_TOP_K = bounded_int(0, 1_000_000, "top-k")


def _handler(parser: argparse.ArgumentParser, target: str) -> None:
    """Run ``target`` ("module:function" in this package) for this (sub)command."""
    parser.set_defaults(handler=target)


def _chat_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="send one message and stream the reply")
    p.add_argument("-m", "--model", default="starter", help="a .gguf path or a library model name")
    p.add_argument("--system", type=text_arg, help="system prompt")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=_TOP_K)
    p.add_argument("--min-p", type=float)
    p.add_argument("--repeat-penalty", type=float)
    p.add_argument("--max-tokens", type=_TOKENS)
    p.add_argument("--seed", type=_SEED)
    p.add_argument(
        "--ctx", type=_CONTEXT, help=f"context length in tokens (0 = automatic, else at least {MIN_CONTEXT})"
    )
    p.add_argument("--gpu-layers", type=_LAYERS, help="layers on the GPU (-1 all, 0 none, -2 automatic)")
    p.add_argument(
        "--workers", metavar="HOST:PORT[,HOST:PORT]", help="spread the model over these `llamadesk worker`s"
    )
    p.add_argument("--template", metavar="FILE", help="a Jinja chat template to use instead of the model's")
    p.add_argument("--json", action="store_true", help="print one JSON object with the reply and its stats")
    p.add_argument(
        "--server",
        metavar="URL",
        type=text_arg,
        help="chat with a model of a remote OpenAI-compatible server (a URL, or a name from `servers list`)",
    )
    p.add_argument("--api-key", type=text_arg, help="the remote server's API key (default: the one stored)")
    p.add_argument(
        "--show-thinking",
        action="store_true",
        help="print a reasoning model's thinking too (dimmed on a terminal); it is hidden by default",
    )
    p.add_argument(
        "--docs",
        metavar="NAME[,NAME]",
        type=text_arg,
        help="answer from these document collections, citing numbered sources (see `llamadesk docs`)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--conversation", type=conversation_id, metavar="ID", help="continue a stored conversation"
    )
    group.add_argument("--new", action="store_true", help="start and store a new conversation")
    p.add_argument(
        "prompt", nargs="?", type=text_arg, help="your message; '-' or none reads it from stdin (e.g. a pipe)"
    )
    _handler(p, "chat:cmd_chat")


def _conversation_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("conversations", help="list, show, export, search and import conversations")
    commands = parser.add_subparsers(dest="conversations_command", metavar="COMMAND", required=True)

    p = commands.add_parser("list", help="list conversations, pinned first, then the most recent")
    p.add_argument("--limit", type=limit, default=None, help="show at most this many")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "conversations:list_command")

    p = commands.add_parser("show", help="print the shown branch of a conversation")
    p.add_argument("id", type=conversation_id, help="conversation id (see `conversations list`)")
    p.add_argument("--json", action="store_true", help="print the full JSON export")
    _handler(p, "conversations:show_command")

    p = commands.add_parser("export", help="export a conversation as Markdown or JSON")
    p.add_argument("id", type=conversation_id, help="conversation id")
    p.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    p.add_argument("--out", default=None, help="write to this file instead of stdout ('-' is stdout)")
    _handler(p, "conversations:export_command")

    p = commands.add_parser("search", help="full-text search in titles and messages")
    p.add_argument("query", type=text_arg, help="words to find; the last one may be the start of a word")
    p.add_argument("--limit", type=limit, default=50, help="show at most this many hits (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "conversations:search_command")

    p = commands.add_parser("import", help="import a conversation from a JSON export ('-' reads stdin)")
    p.add_argument("file", help="a file written by `conversations export --format json`")
    p.add_argument("--json", action="store_true", help="print the new conversation as JSON")
    _handler(p, "conversations:import_command")


def _hub_parsers(sub: argparse._SubParsersAction) -> None:
    hub = sub.add_parser("hub", help="search and download GGUF models from the Hugging Face Hub")
    hub_sub = hub.add_subparsers(dest="hub_command", metavar="COMMAND")
    hub.set_defaults(usage=hub)

    p = hub_sub.add_parser("search", help="find GGUF models")
    p.add_argument("query", nargs="?", default="", type=text_arg, help="words in the model's name")
    p.add_argument("--limit", type=bounded_int(1, 1000, "a limit"), default=20, help="how many (default 20)")
    p.add_argument("--sort", choices=("downloads", "likes", "trending", "recent"), default="downloads")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "hub:cmd_hub_search")

    p = hub_sub.add_parser("files", help="list a repository's GGUF files, sizes and whether they fit")
    p.add_argument("repo", type=text_arg, help="owner/name")
    p.add_argument("--revision", default="main", type=text_arg)
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "hub:cmd_hub_files")

    p = hub_sub.add_parser(
        "download", help="download a model file (run it again to resume an interrupted download)"
    )
    p.add_argument("repo", type=text_arg, help="owner/name")
    p.add_argument("file", type=text_arg, help="file path in the repo, or a quantization such as Q4_K_M")
    p.add_argument("--revision", default="main", type=text_arg)
    p.add_argument("--to", metavar="DIR", help="folder to save into (default: the models folder)")
    _handler(p, "hub:cmd_hub_download")


def _model_parsers(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list, import and remove local models")
    models_sub = models.add_subparsers(dest="models_command", metavar="COMMAND")
    models.set_defaults(usage=models)

    p = models_sub.add_parser("list", help="every model on this machine")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "models:cmd_models_list")

    p = models_sub.add_parser("import", help="add a GGUF file from elsewhere")
    p.add_argument("path", help="the .gguf file (the first part of a split model)")
    p.add_argument("--copy", action="store_true", help="copy it into the models folder")
    _handler(p, "models:cmd_models_import")

    p = models_sub.add_parser("remove", help="delete a downloaded model or forget an imported one")
    p.add_argument("name", type=text_arg, help="name, key or path (see `models list`)")
    _handler(p, "models:cmd_models_remove")


def _docs_parsers(sub: argparse._SubParsersAction) -> None:
    """Document collections: index files, list them, search them."""
    docs = sub.add_parser("docs", help="index documents into collections and search them")
    docs_sub = docs.add_subparsers(dest="docs_command", metavar="COMMAND")
    docs.set_defaults(usage=docs)
    embed_help = "also search by meaning with this GGUF embedding model (a path or library name)"

    p = docs_sub.add_parser("add", help="index files and folders into a collection (created if new)")
    p.add_argument("name", type=text_arg, help="the collection's name")
    p.add_argument("paths", nargs="+", metavar="PATH", help=".txt, .md, .pdf, .docx, .html files or folders")
    p.add_argument("--embed", metavar="MODEL", help=embed_help)
    _handler(p, "docs:cmd_docs_add")

    p = docs_sub.add_parser("refresh", help="re-check a collection: index changed files, drop deleted ones")
    p.add_argument("name", type=text_arg, help="the collection's name")
    p.add_argument("--embed", metavar="MODEL", help=embed_help)
    _handler(p, "docs:cmd_docs_refresh")

    p = docs_sub.add_parser("list", help="list collections, or the files of one (with skip reasons)")
    p.add_argument("name", nargs="?", type=text_arg, help="a collection to list the files of")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "docs:cmd_docs_list")

    p = docs_sub.add_parser("remove", help="forget a collection (the files themselves are untouched)")
    p.add_argument("name", type=text_arg, help="the collection's name")
    _handler(p, "docs:cmd_docs_remove")

    p = docs_sub.add_parser("search", help="the passages that best answer a question")
    p.add_argument("name", type=text_arg, help="the collection's name (several: NAME1,NAME2)")
    p.add_argument("query", type=text_arg, help="the question or words to look for")
    p.add_argument("--k", type=bounded_int(1, 100, "a passage count"), default=5, help="how many (default 5)")
    p.add_argument("--embed", metavar="MODEL", help=embed_help)
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "docs:cmd_docs_search")


def _servers_parsers(sub: argparse._SubParsersAction) -> None:
    servers = sub.add_parser("servers", help="list, add and remove remote OpenAI-compatible servers")
    servers_sub = servers.add_subparsers(dest="servers_command", metavar="COMMAND", parser_class=Parser)
    servers.set_defaults(usage=servers)
    p = servers_sub.add_parser("list", help="each server, whether it answers, and its models")
    p.add_argument("--no-check", action="store_true", help="only list them; do not contact them")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "servers:cmd_servers_list")
    p = servers_sub.add_parser("add", help="add a server (llama-server, vLLM, Ollama, LM Studio, LlamaDesk…)")
    p.add_argument("url", type=text_arg, help="its base URL, such as http://192.168.1.20:8080")
    p.add_argument("--name", type=text_arg, help="the name shown in the model picker (default host:port)")
    p.add_argument("--api-key", type=text_arg, help="its API key, kept in the system keyring")
    p.add_argument("--no-check", action="store_true", help="add it without contacting it")
    _handler(p, "servers:cmd_servers_add")
    p = servers_sub.add_parser("remove", help="forget a server and its API key")
    p.add_argument("name", type=text_arg, help="its name or URL (see `servers list`)")
    _handler(p, "servers:cmd_servers_remove")


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API (Ctrl+C stops)")
    p.add_argument("-m", "--model", help="a .gguf path or library model to load first (default: none)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; others need an API key)")
    p.add_argument("--port", type=bounded_int(0, 65535, "a port"), help="TCP port (default 8642)")
    p.add_argument("--api-key", type=text_arg, help="require this key (also $LLAMADESK_API_KEY)")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN", help="let web pages from ORIGIN call")
    p.add_argument("--no-load-on-request", action="store_true", help="never load a model a request names")
    p.add_argument("--store-requests", action="store_true", help="keep API chats in the history")
    p.add_argument("--max-queued", type=bounded_int(1, 1024, "a queue size"), help="waiting requests (16)")
    p.add_argument(
        "--ctx", type=_CONTEXT, help=f"context length in tokens (0 = automatic, else at least {MIN_CONTEXT})"
    )
    p.add_argument("--gpu-layers", type=_LAYERS, help="layers on the GPU (-1 all, 0 none, -2 automatic)")
    _handler(p, "serve:cmd_serve")


def _worker_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="lend this machine's GPU or CPU to LlamaDesk elsewhere (llama.cpp RPC)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=bounded_int(1, 65535, "a port"), default=50052, help="TCP port (50052)")
    p.add_argument("--device", help="the llama.cpp device to serve, e.g. CUDA0 (default: the GPUs, else CPU)")
    p.add_argument("--threads", type=bounded_int(1, 512, "a thread count"), help="CPU threads")
    p.add_argument("--cache", action="store_true", help="keep received tensors on disk for the next client")
    _handler(p, "worker:cmd_worker")


def _lab_parsers(sub: argparse._SubParsersAction) -> None:
    """The model lab: speed, perplexity and side-by-side replies."""
    threads = bounded_int(0, 512, "a thread count")
    window = bounded_int(16, 1_048_576, "a context length")
    p = sub.add_parser("bench", help="measure a model's speed here (like llama-bench's pp512 and tg128)")
    p.add_argument("model", help="a .gguf path or a library model name")
    p.add_argument("--ctx", type=_CONTEXT, help="context length in tokens (default 640, what the test needs)")
    p.add_argument("--gpu-layers", type=_LAYERS, help="layers on the GPU (-1 all, 0 none, -2 automatic)")
    p.add_argument("--threads", type=threads, help="CPU threads (0 = automatic)")
    p.add_argument("--repetitions", type=bounded_int(1, 100, "a count"), default=3, help="runs of each (3)")
    p.add_argument("-p", "--prompt-tokens", type=bounded_int(1, 65536, "a token count"), default=512)
    p.add_argument("-n", "--gen-tokens", type=bounded_int(1, 65536, "a token count"), default=128)
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "lab:cmd_bench")

    p = sub.add_parser("perplexity", help="measure a model's perplexity on a text file (lower is better)")
    p.add_argument("model", help="a .gguf path or a library model name")
    p.add_argument("file", help="a UTF-8 text file (at least one context of tokens)")
    p.add_argument("--ctx", type=window, help="window in tokens (default 512)")
    p.add_argument("--gpu-layers", type=_LAYERS, help="layers on the GPU (-1 all, 0 none, -2 automatic)")
    p.add_argument("--threads", type=threads, help="CPU threads (0 = automatic)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "lab:cmd_perplexity")

    p = sub.add_parser("compare", help="send one prompt to two or more models, one after another")
    p.add_argument("models", nargs="+", metavar="MODEL", help="two or more .gguf paths or library names")
    p.add_argument("prompt", type=text_arg, help="the message every model answers")
    p.add_argument("--max-tokens", type=_TOKENS, help="longest reply")
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=_SEED)
    p.add_argument("--ctx", type=_CONTEXT, help="context length in tokens (0 = automatic)")
    p.add_argument("--gpu-layers", type=_LAYERS, help="layers on the GPU (-1 all, 0 none, -2 automatic)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "lab:cmd_compare")


def build_parser() -> argparse.ArgumentParser:
    """Every command and option; imports nothing a command needs."""
    parser = Parser(prog="llamadesk", description="Chat with local GGUF models, offline.")
    parser.add_argument("--version", action="store_true", help="print versions and the compiled GPU backend")
    parser.add_argument(
        "--self-test",
        nargs="?",
        const="starter",
        metavar="MODEL",
        help="load the starter model (or MODEL), generate a few tokens, check folders; exit 0 or 1",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log details on stderr (llama.cpp's too)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("inspect", help="show a GGUF model's facts and whether it fits this machine")
    p.add_argument("path", help="a .gguf file or a model name from the library")
    p.add_argument("--json", action="store_true", help="print JSON")
    _handler(p, "model_info:cmd_inspect")

    _chat_parser(sub)
    _conversation_parsers(sub)
    _hub_parsers(sub)
    _model_parsers(sub)
    _lab_parsers(sub)
    _docs_parsers(sub)
    _serve_parser(sub)
    _servers_parsers(sub)
    _worker_parser(sub)
    return parser


def _setup(verbose: bool) -> None:
    """The log file, and the header cache that spares re-reading every model's GGUF header."""
    from ..engine import header_cache
    from ..logs import setup_logging
    from ..paths import get_paths

    paths = get_paths()
    setup_logging(paths.log_dir, verbose=verbose)  # an unwritable folder: stderr only
    header_cache.configure(paths.data_dir / header_cache.CACHE_FILE_NAME)
    if not verbose:
        logging.getLogger("llama.cpp").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (imports make long-lived objects, not garbage)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _resolve(target: str) -> object:
    module_name, _, function = target.partition(":")
    with _collector_paused():
        module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, function)


def main(argv: Sequence[str] | None = None, *, exiting: bool = False) -> int:
    """Run one command; returns the exit status.

    ``exiting``: the process ends when this returns (the ``llamadesk`` program), so the objects
    start-up built are frozen out of the garbage collector's sight (see the module docstring).
    """
    if not exiting:
        return _main(argv)
    gc.disable()
    try:
        return _main(argv, started=_started)
    finally:
        gc.freeze()  # the interpreter's exit then walks none of what is still alive


def _started() -> None:
    """Start-up is over: keep what it built out of every later collection, and collect again."""
    gc.freeze()
    gc.enable()


def _main(argv: Sequence[str] | None, started: Callable[[], None] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # text that can't be encoded is escaped, never a crash
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    _setup(args.verbose)
    try:
        target: str | None = getattr(args, "handler", None)
        if args.version or args.self_test:
            target = "selftest:version_command" if args.version else "selftest:self_test_command"
        if target is None:
            (getattr(args, "usage", None) or parser).print_help(sys.stderr)
            return EXIT_ERROR
        try:
            handler = _resolve(target)
        except ImportError as exc:  # a broken installation: say which command and why
            command = args.command or ("--version" if args.version else "--self-test")
            log.exception("the %s command could not start", command)
            return fail(f"the {command} command could not start: {exc} (reinstall LlamaDesk)")
        if started is not None:
            started()
        return int(handler(args))  # type: ignore[operator]
    except LlamaDeskError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
