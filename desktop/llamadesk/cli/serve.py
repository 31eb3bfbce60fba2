"""`llamadesk serve`: the OpenAI-compatible API server, headless.

It loads the model given with ``-m`` (or none: requests then load library models by name), serves
until Ctrl+C or SIGTERM, then stops its replies, closes its connections and frees the model
before exiting with status 0. One line per request goes to stderr (and the log file).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from ..engine.service import InferenceService
from ..paths import get_paths
from ..settings import API_KEY_SECRET, SettingsStore, validated_update
from .common import CliError, note, warn
from .resolve import library_key, models_folder, resolve

__all__ = ["API_KEY_ENV", "cmd_serve"]

API_KEY_ENV = "LLAMADESK_API_KEY"
POLL_S = 0.1


def _api_key(args: argparse.Namespace, config_dir: Any) -> str:
    """--api-key, else $LLAMADESK_API_KEY, else the key saved in Preferences (the keyring)."""
    if args.api_key is not None:
        return str(args.api_key).strip()
    if os.environ.get(API_KEY_ENV):
        return os.environ[API_KEY_ENV].strip()
    from ..secrets import SecretStore

    return (SecretStore(config_dir).get(API_KEY_SECRET) or "").strip()


def _request_log() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("llamadesk.server.requests")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def cmd_serve(args: argparse.Namespace) -> int:
    from ..hub.library import ModelLibrary
    from ..server.config import ServerConfig, ServerError
    from ..server.history import History
    from ..server.runner import LocalServer

    paths = get_paths().ensure()
    store = SettingsStore(paths.settings_file)
    settings = store.load()
    if store.warning:
        warn(store.warning)
    server = settings.server
    config = ServerConfig(
        host=args.host if args.host is not None else server.host,
        port=args.port if args.port is not None else server.port,
        api_key=_api_key(args, paths.config_dir),
        allowed_origins=list(args.allow_origin or server.allowed_origins),
        load_on_request=not args.no_load_on_request,
        store_requests=args.store_requests or server.store_requests,
        embedding_model=server.embedding_model,
        max_queued=args.max_queued if args.max_queued is not None else server.max_queued,
    )
    try:
        config.check()
    except ServerError as exc:
        raise CliError(str(exc)) from None
    models_dir = models_folder(settings, paths)
    library = ModelLibrary(paths, models_dir=models_dir)
    runtime_changes: dict[str, Any] = {}
    if args.ctx is not None:
        runtime_changes["n_ctx"] = args.ctx
    if args.gpu_layers is not None:
        runtime_changes["n_gpu_layers"] = args.gpu_layers

    stopping = threading.Event()

    def on_signal(*_: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    service = InferenceService()
    history = None
    if config.store_requests:
        from ..chat.store import ConversationStore

        history = History(lambda: ConversationStore(paths.database_file))
    running: LocalServer | None = None
    handler = _request_log()
    try:
        if args.model:
            model = resolve(args.model, models_dir=models_dir)
            key = library_key(model, models_dir)
            runtime = validated_update(settings.for_model(key)[1], **runtime_changes)
            override = settings.template_overrides.get(key) or None
            note(f"loading {model.path.name}")
            load = service.load(model.path, runtime, template_override=override, client="cli")
            while not load.wait(POLL_S):
                if stopping.is_set():
                    load.stop()
            if stopping.is_set():
                return 0
            if load.error is not None:
                raise load.error
        elif runtime_changes:
            settings = settings.model_copy(
                update={"runtime": validated_update(settings.runtime, **runtime_changes)}
            )
        try:
            running = LocalServer(
                service, config, settings=lambda: settings, library=lambda: library, history=history
            )
            running.start()
        except ServerError as exc:
            raise CliError(str(exc)) from None
        loaded = service.loaded
        what = f"{loaded.path.name}" if loaded is not None else "no model yet (requests load one by name)"
        print(f"llamadesk: serving {what} at {running.url} (Ctrl+C to stop)", file=sys.stderr, flush=True)
        if not config.api_key:
            note("no API key: any program on this computer can use the server")
        while not stopping.wait(POLL_S):
            if not running.running:
                raise CliError(f"the server stopped unexpectedly: {running.error}")
        note("stopping")
        return 0
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if running is not None:
            running.stop()
        elif history is not None:
            history.close()
        service.close(timeout=10)
        logging.getLogger("llamadesk.server.requests").removeHandler(handler)
