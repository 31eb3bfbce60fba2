"""The model: the library and the picker, choosing, planning and loading, the "may not fit"
question, the chat template, and the loaded model's identity; or a remote server's model
(:class:`~llamadesk.ui.remote_models.RemoteCatalog` lists them), used without loading anything.

Part of the main window: it holds the window and reaches the other parts through it. Fit
decisions and their texts come from the Qt-free :mod:`llamadesk.engine.load_policy`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..engine import load_policy
from ..errors import LlamaDeskError
from ..paths import STARTER_MODEL_NAME, starter_model_path
from ..settings import RuntimeSettings
from .inference import LoadedModel
from .library_listing import CHECKING_TEXT, UNCHECKED, Library, LibraryListing
from .model_picker import ModelEntry
from .model_workers import ModelWorkers
from .remote_models import RemoteCatalog

if TYPE_CHECKING:
    from ..engine import GGUFInfo, Hardware
    from .main_window import MainWindow

log = logging.getLogger(__name__)

__all__ = ["GGUF_FILTER", "Library", "ModelSession"]

GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"


class ModelSession(QObject):
    """The model picker, the library behind it, and loading.

    Nothing here reads a model file on the GUI thread: the library is listed by a
    :class:`LibraryListing` and a model is checked (``inspect_gguf``) on a worker before it loads.

    Signals:
        modelsListed: the picker was filled from the whole library (after a scan or a refresh).
    """

    modelsListed = Signal()

    def __init__(self, window: MainWindow, library_factory: Callable[[Path | None], Library]) -> None:
        super().__init__(window)
        self.window = window
        self._library_factory = library_factory
        self._library: Library | None = None
        self._library_lock = threading.Lock()
        self._models_dir = self.models_dir_setting()
        self._restore_pending = False
        self._restore_remote = ""  # the remote model used last time, chosen again once its server answers
        self._checking: Path | None = None  # the model whose file is being checked before it loads
        self._loading_path: Path | None = None
        self._load_cancelled = False
        self._loaded_identity: tuple[Path, tuple[str, str]] | None = None
        self.fit_warning: QMessageBox | None = None  # open while asking whether to load a too-large model
        self.listing = LibraryListing(window.tasks, self._open_library, self)
        self.listing.changed.connect(self._fill_picker)
        self.listing.reading.connect(window.status.set_reading)
        self.listing.finished.connect(self._on_listing_finished)
        self.listing.failed.connect(self._on_listing_failed)
        self.remote = RemoteCatalog(window)
        self.remote.changed.connect(self._fill_remote)
        window.model_picker.remoteChosen.connect(self.use_remote)
        window.model_picker.listOpening.connect(self.remote.refresh_if_stale)
        if window.settings.remote_servers:
            QTimer.singleShot(0, self.remote.refresh)  # once the window is up; never blocks it
        c = window.controller
        c.modelLoading.connect(self._on_model_loading)
        c.loadProgress.connect(window.load_progress.set_progress)
        c.modelLoaded.connect(self._on_model_loaded)
        c.modelLoadFailed.connect(self._on_model_load_failed)
        c.modelUnloaded.connect(self._on_model_unloaded)
        window.composer.thinkingChanged.connect(self.remember_thinking)
        self.workers = ModelWorkers(self)  # RPC workers: probed before a load, a lost one offered away

    @property
    def loading(self) -> bool:
        """True while a model is checked or loaded."""
        return self._loading_path is not None or self._checking is not None

    # -- identity

    def model_key(self, path: Path | None = None) -> str:
        """The key presets are saved under for ``path`` (default: the loaded model)."""
        return self._identify(path)[0]

    def model_name(self, path: Path | None = None) -> str | None:
        """The name shown for ``path`` (default: the loaded model); None when nothing is loaded."""
        return self._identify(path)[1] or None

    def _identify(self, path: Path | None) -> tuple[str, str]:
        """(preset key, display name) of ``path`` or of the loaded model (remembered: replies ask
        for it on every send). Answered from the listing, never by reading the file."""
        remote = self.window.controller.remote
        if remote is not None and (path is None or str(path) == str(Path(remote.key))):
            return remote.key, remote.display_name
        if path is None:
            loaded = self.window.controller.loaded
            if loaded is None:
                return "", ""
            if self._loaded_identity is not None and self._loaded_identity[0] == loaded.path:
                return self._loaded_identity[1]
            identity = self._identify(loaded.path)
            self._loaded_identity = (loaded.path, identity)
            return identity
        found = self.listing.find(path)
        if found is not None:
            return str(found.key), str(found.name)
        # Not listed (yet): the key and name the library gives such a file.
        starter = starter_model_path()
        real = os.path.realpath(path)
        if starter is not None and real == os.path.realpath(starter):
            return "starter", STARTER_MODEL_NAME
        from ..hub.quant import display_name

        return f"file:{real}", display_name(Path(path).name)

    def remember_thinking(self, choice: str) -> None:
        """Keep the composer's Think choice as the loaded model's default, for its next load too."""
        window = self.window
        local = window.controller.loaded is not None and window.controller.remote is None
        if local and window.settings.remember_thinking(self.model_key(), choice):
            window.save_settings()

    # -- the library and the picker

    @property
    def library(self) -> Library:
        """The model library, created on first use (the start-up listing usually made it already)."""
        return self._open_library()

    def _open_library(self) -> Library:
        """The library, created on first use; called on the listing's worker thread too."""
        with self._library_lock:
            if self._library is None:
                from ..engine import detect_hardware

                self._library = self._library_factory(self._models_dir)
                detect_hardware()  # cached: planning on the GUI thread does not wait for it
            return self._library

    def models_dir_setting(self) -> Path | None:
        folder = self.window.settings.app.models_dir
        return Path(folder).expanduser() if folder else None

    @property
    def library_ready(self) -> bool:
        """True once the library was listed completely (and no listing is running)."""
        return self._library is not None and self.listing.models is not None and not self.listing.busy

    def start_library_scan(self, *, restore_last_model: bool = True) -> None:
        """Fill the picker from stats and the header cache at once, then read the headers not
        known yet in the background; at start-up, the last model loads as soon as it is listed."""
        self._restore_pending = self._restore_pending or restore_last_model
        self.listing.refresh()

    def use_models_dir(self) -> None:
        """Point the library and new downloads at the models folder from the settings, and list it."""
        window = self.window
        folder = self.models_dir_setting() or window.paths.models_dir
        with self._library_lock:
            self._models_dir = self.models_dir_setting()
            if self._library is not None:
                self._library.models_dir = folder
        self.refresh_models()
        window.hub.set_models_dir(folder)  # running downloads finish where they started

    def refresh_models(self) -> None:
        """List the models again in the background and fill the picker (after an import, a
        download or a change in My models); ``modelsListed`` says when it is done."""
        self.start_library_scan(restore_last_model=False)

    def _on_listing_finished(self, _models: list[Any]) -> None:
        self.modelsListed.emit()

    def _on_listing_failed(self, message: str) -> None:
        self.window.show_error(f"The model list could not be read: {message}")

    def planning_hardware(self) -> Hardware:
        """This machine as a model about to load will find it: loading one frees the one loaded now."""
        from .. import engine

        loaded = self.window.controller.loaded
        return load_policy.planning_hardware(engine.detect_hardware(), loaded.ram_used if loaded else 0)

    def runtime_for(self, key: str) -> RuntimeSettings:
        """The runtime settings a model loads with: its preset's, or the general ones."""
        settings = self.window.settings
        return settings.for_model(key)[1] if key in settings.presets else settings.runtime

    def _fill_picker(self, models: list[Any]) -> None:
        """Show ``models`` in the picker: a model not checked yet is listed but can't be chosen."""
        window = self.window
        hardware: Hardware | None = None
        entries = []
        for model in models:
            if getattr(model, "kind", "model") != "model" or getattr(model, "is_embedding", False):
                continue  # embedding models serve document search, not chat
            info = model.info
            fit = ""
            if info is not None and model.state == "ok":
                try:
                    hardware = hardware or self.planning_hardware()
                    runtime = self.runtime_for(model.key)
                    plan = load_policy.plan_for(info, hardware, runtime.n_ctx, runtime.n_gpu_layers)
                    fit = load_policy.fit_label(plan, runtime.n_ctx)
                except Exception:  # a planner problem must not hide the model
                    log.exception("planning %s failed", model.path)
            checking = model.state == UNCHECKED
            entries.append(
                ModelEntry(
                    key=model.key,
                    name=model.name,
                    path=Path(model.path),
                    size=int(model.size),
                    quantization=getattr(model, "quantization", None) or (info.file_type if info else ""),
                    fit_label=fit,
                    ok=model.state == "ok",
                    message=CHECKING_TEXT if checking else model.message or "",
                )
            )
        window.model_picker.set_models(entries)
        self.reset_picker()
        self._loaded_identity = None  # the loaded model's name may be known better now
        if self._restore_pending:
            self._restore_pending = False
            self.restore_last_model()

    def _fill_remote(self, statuses: list[Any]) -> None:
        self.window.model_picker.set_remote(statuses)
        self.reset_picker()
        if self._restore_remote and not self.remote.checking:
            self._use_last_remote()

    def _use_last_remote(self) -> None:
        """Choose the remote model used last time again, if its server lists it now and nothing else
        was chosen meanwhile."""
        wanted, self._restore_remote = self._restore_remote, ""
        controller = self.window.controller
        if controller.loaded is not None or controller.busy or self._checking is not None:
            return
        for server, model in self.window.model_picker.remote_entries():
            if self.remote.model(server, model) is not None and f"remote:{server}/{model}" == wanted:
                self.use_remote(server, model)
                return

    def use_remote(self, server: str, model: str) -> bool:
        """Chat with ``model`` of the remote server called ``server`` from now on (nothing loads).
        False when it can't be chosen now (a reply, a load or a check runs)."""
        window = self.window
        if window.controller.busy or self._checking is not None:
            window.show_info("Wait for the current reply or load to finish first.")
            self.reset_picker()
            return False
        chosen = self.remote.model(server, model)
        if chosen is None:
            window.show_error(f"The remote server {server!r} is no longer listed", topic="model")
            self.reset_picker()
            return False
        window.controller.use_remote(chosen, self.remote.api_key(server))
        return True

    def show_model_list(self) -> None:
        picker = self.window.model_picker
        if not picker.isEnabled():
            self.window.show_info(
                "Wait for the current reply or load to finish before choosing another model."
            )
            return
        picker.setFocus()
        picker.showPopup()

    # -- choosing and loading

    def use_starter_model(self) -> None:
        path = starter_model_path()
        if path is None:
            self.window.show_error(
                "The starter model is not installed",
                "Open a .gguf file or browse models instead.",
                topic="model",
            )
            return
        self.load_model(path)

    def ask_open_model_file(self) -> None:
        start = str(self.window.paths.models_dir)
        path, _ = QFileDialog.getOpenFileName(self.window, "Open a GGUF model", start, GGUF_FILTER)
        if path:
            self.open_model_file(Path(path))

    def open_model_file(self, path: Path) -> None:
        """Add a file from disk to the library (without copying it) and load it."""
        library = self.library

        def imported(model: Any) -> None:
            self.listing.update(model)
            self.refresh_models()
            self.load_model(path)

        def failed(error: LlamaDeskError) -> None:
            self.window.show_error(str(error), "Choose another .gguf file.", topic="model")

        self.window.tasks.run(lambda: library.import_model(path, copy=False), imported, failed)

    def load_model(self, path: Path, *, confirm: bool = True, runtime: RuntimeSettings | None = None) -> bool:
        """Check the file on a worker (``inspect_gguf``), then say whether it may not fit or load
        it on the inference thread. False when it can't start now (a reply, a load or a check runs).
        ``runtime``: load with these settings instead of the model's preset or the general ones."""
        window = self.window
        if window.controller.busy or self._checking is not None:
            window.show_info("Wait for the current reply or load to finish first.")
            self.reset_picker()
            return False
        self._check(Path(path), confirm=confirm, quiet=False, runtime=runtime)
        return True

    def _check(
        self, path: Path, *, confirm: bool, quiet: bool, runtime: RuntimeSettings | None = None
    ) -> None:
        """Read (or look up) the model's facts in the background, then plan and load it;
        ``quiet``: a file that can't be used is only logged (the last model, at start-up)."""
        from ..engine import inspect_gguf

        window = self.window
        self._checking = path
        window.model_picker.set_current_path(path)
        window.update_state()

        def checked(info: GGUFInfo) -> None:
            self._checking = None
            self._plan_load(path, info, confirm, runtime)
            window.update_state()

        def failed(error: LlamaDeskError) -> None:
            self._checking = None
            self.reset_picker()
            if quiet:
                log.info("the last model can't be loaded: %s", error)
            else:
                window.show_error(str(error), "Choose another model file.", topic="model")
            window.update_state()

        window.tasks.run(lambda: inspect_gguf(path), checked, failed, channel="model-check")

    def _plan_load(
        self, path: Path, info: GGUFInfo, confirm: bool, runtime: RuntimeSettings | None = None
    ) -> None:
        """Load a checked model, first asking when it may not fit in this machine's memory."""
        runtime = runtime or self.runtime_for(self.model_key(path))
        if runtime.workers:  # probed first (off this thread); the split is shown, or asked about
            self.workers.plan(path, info, runtime, confirm)
            return
        if confirm:
            try:
                hardware = self.planning_hardware()
            except Exception:  # the plan is advice; never block a load on it
                log.exception("reading this machine's memory failed")
            else:
                check = load_policy.check_load(info, hardware, runtime.n_ctx, runtime.n_gpu_layers)
                if check.warning is not None:
                    self._ask_load_anyway(path, info, runtime, check.warning)
                    return
        self._start_load(path, runtime)

    def _start_load(self, path: Path, runtime: RuntimeSettings) -> None:
        window = self.window
        if window.controller.busy:  # e.g. another load began while the fit warning was open
            window.show_info("Wait for the current reply or load to finish first.")
            self.reset_picker()
            return
        key = self.model_key(path)
        # The disk budget for saved conversation states (Preferences → Storage) applies from this load on.
        budget_mb = window.settings.app.state_disk_budget_mb
        window.controller.service.cache.states.disk_budget = budget_mb * 1024 * 1024
        self.workers.loading(path, runtime)
        window.controller.load_model(
            path, runtime, template_override=window.settings.template_overrides.get(key)
        )

    def _ask_load_anyway(
        self, path: Path, info: GGUFInfo, runtime: RuntimeSettings, warning: load_policy.FitWarning
    ) -> None:
        """Say why the model may not fit and offer the largest context that does (non-blocking)."""
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            warning.title,
            warning.text,
            QMessageBox.StandardButton.NoButton,
            self.window,
        )
        box.setObjectName("fitWarning")
        box.setInformativeText(warning.informative)
        smaller = None
        if warning.smaller_ctx:
            smaller = box.addButton(warning.smaller_button, QMessageBox.ButtonRole.AcceptRole)
            smaller.setObjectName("loadSmallerContextButton")
        anyway = box.addButton(warning.anyway_button, QMessageBox.ButtonRole.DestructiveRole)
        anyway.setObjectName("loadAnywayButton")
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(smaller or cancel)
        box.setEscapeButton(cancel)

        def answered() -> None:
            self.fit_warning = None
            clicked = box.clickedButton()
            if smaller is not None and clicked is smaller:
                self._start_load(path, runtime.model_copy(update={"n_ctx": warning.smaller_ctx}))
            elif clicked is anyway:
                self._start_load(path, runtime)
            else:
                self.reset_picker()

        box.finished.connect(answered)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.fit_warning = box
        box.open()

    def cancel_load(self) -> None:
        """Cancel the load (or the check before it)."""
        if self._checking is not None:
            self.window.tasks.cancel("model-check")
            self._checking = None
            self.reset_picker()
            self.window.update_state()
            return
        self._load_cancelled = True
        self.window.controller.cancel_load()

    def edit_chat_template(self) -> None:
        """Show the loaded model's chat template; a saved override reloads the model with it."""
        from .template_dialog import TemplateDialog

        window = self.window
        loaded = window.controller.loaded
        if loaded is None:
            window.show_info("Load a model first to see or change its chat template.", topic="model")
            return
        if window.controller.remote is not None:
            window.show_info(
                f"{window.controller.remote.server} applies its own chat template to its models."
            )
            return
        key = self.model_key()
        dialog = TemplateDialog(
            self.model_name() or loaded.path.stem,
            loaded.info.chat_template,
            window.settings.template_overrides.get(key, ""),
            bos_token=loaded.info.bos_token or "",
            eos_token=loaded.info.eos_token or "",
            parent=window,
        )
        if dialog.exec() != TemplateDialog.DialogCode.Accepted:
            return
        override = dialog.result_override()
        overrides = dict(window.settings.template_overrides)
        if override:
            overrides[key] = override
        else:
            overrides.pop(key, None)
        if overrides == window.settings.template_overrides:
            return
        window.settings = window.settings.model_copy(update={"template_overrides": overrides})
        window.save_settings()
        self.reload_model()

    def reload_model(self) -> None:
        """Load the current model again (after runtime settings changed); a remote one is checked again."""
        if self.window.controller.remote is not None:
            self.remote.refresh()
            return
        loaded = self.window.controller.loaded
        if loaded is not None:
            self.load_model(loaded.path, confirm=False)

    def unload_model(self) -> None:
        controller = self.window.controller
        if controller.loaded is not None and not controller.busy:
            controller.unload()

    def restore_last_model(self) -> None:
        """Load the model used last time, if it is still there and usable (checked in the background)."""
        last = self.window.settings.app.last_model
        if last.startswith("remote:"):  # a remote model: chosen again once its server was checked
            self._restore_remote = last
            if self.remote.statuses and not self.remote.checking:
                self._use_last_remote()
            return
        if not last or not Path(last).is_file() or self.window.controller.busy or self._checking:
            return
        self._check(Path(last), confirm=False, quiet=True)

    def reset_picker(self) -> None:
        """Show the model being checked or loaded, else the loaded one, after a choice that was not taken."""
        controller = self.window.controller
        loaded = controller.loaded
        current: Path | str | None = self._checking or self._loading_path or (loaded.path if loaded else None)
        if controller.remote is not None and self._checking is None and self._loading_path is None:
            current = controller.remote.key
        self.window.model_picker.set_current_path(current)

    # -- the controller's answers

    def _on_model_loading(self, path: str) -> None:
        window = self.window
        self._loading_path = Path(path)
        self._load_cancelled = False
        window.load_progress.start(self.model_name(Path(path)) or Path(path).name)
        window.load_progress_action.setVisible(True)
        window.model_picker.set_current_path(path)
        window.update_state()

    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        window = self.window
        if window.closed:
            return
        if window.controller.remote is not None:
            self._on_remote_chosen()
            return
        self._loading_path = None
        window.load_progress_action.setVisible(False)
        name = self.model_name(loaded.path) or loaded.path.name
        window.status.set_model(
            name,
            backend=loaded.backend,
            n_gpu_layers=loaded.n_gpu_layers,
            n_ctx=loaded.n_ctx,
            fallback_template=loaded.chat_format.is_fallback,
            block_count=loaded.info.block_count or 0,
        )
        window.model_picker.set_current_path(loaded.path)
        window.banner.retract("model")  # earlier load problems are solved now
        if loaded.chat_format.is_fallback:
            window.show_info(
                f"{name} has no chat template; the common ChatML format is used. "
                "If replies look odd, choose another model."
            )
        if window.settings.app.last_model != str(loaded.path):
            window.settings.app.last_model = str(loaded.path)
            window.save_settings()
        window.conversations.refresh_chat()
        window.update_state()

    def _on_remote_chosen(self) -> None:
        """A remote model is in use: say so in the status bar and the picker."""
        window = self.window
        remote = window.controller.remote
        assert remote is not None
        window.status.set_model(remote.display_name, backend=f"remote: {remote.url}")
        window.status.layers_label.setText("")
        window.model_picker.set_current_path(remote.key)
        if window.settings.app.last_model != remote.key:  # chosen again at the next start
            window.settings.app.last_model = remote.key
            window.save_settings()
        window.banner.retract("model")
        window.conversations.refresh_chat()
        window.update_state()

    def _on_model_load_failed(self, message: str) -> None:
        window = self.window
        if window.closed:
            return
        self._loading_path = None
        window.load_progress_action.setVisible(False)
        window.status.set_model(None)
        self.reset_picker()
        if self._load_cancelled:
            window.show_info(
                "Loading was cancelled. Choose a model to load when you are ready.", topic="model"
            )
        elif self.workers.offer_reload(message):  # a worker was lost while loading
            pass
        else:
            window.show_error(
                message, "Choose another model, or lower the context length in Preferences.", topic="model"
            )
        self._load_cancelled = False
        window.update_state()

    def _on_model_unloaded(self) -> None:
        window = self.window
        if window.closed:
            return
        window.status.set_model(None)
        self.reset_picker()
        window.update_state()
