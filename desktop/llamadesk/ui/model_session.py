"""The model: the library and the picker, choosing, planning and loading, the "may not fit"
question, the chat template, and the loaded model's identity.

Part of the main window: it holds the window and reaches the other parts through it. Fit
decisions and their texts come from the Qt-free :mod:`llamadesk.engine.load_policy`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..engine import load_policy
from ..errors import LlamaDeskError
from ..paths import STARTER_MODEL_NAME, starter_model_path
from ..settings import RuntimeSettings
from .inference import LoadedModel
from .model_picker import ModelEntry

if TYPE_CHECKING:
    from ..engine import GGUFInfo, Hardware
    from .main_window import MainWindow

log = logging.getLogger(__name__)

__all__ = ["GGUF_FILTER", "Library", "ModelSession"]

GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"


class Library(Protocol):
    """The local model library (``hub.library.ModelLibrary``)."""

    models_dir: Path

    def list(self) -> list[Any]: ...

    def find(self, name_or_path: str) -> Any: ...

    def import_model(self, path: str | Path, *, copy: bool = False) -> Any: ...


class ModelSession(QObject):
    """The model picker, the library behind it, and loading.

    Signals:
        modelsListed: the picker was filled from the library (after a scan or a refresh).
    """

    modelsListed = Signal()

    def __init__(self, window: MainWindow, library_factory: Callable[[Path | None], Library]) -> None:
        super().__init__(window)
        self.window = window
        self._library_factory = library_factory
        self._library: Library | None = None
        self._scanning = False
        self._loading_path: Path | None = None
        self._load_cancelled = False
        self._loaded_identity: tuple[Path, tuple[str, str]] | None = None
        self.fit_warning: QMessageBox | None = None  # open while asking whether to load a too-large model
        c = window.controller
        c.modelLoading.connect(self._on_model_loading)
        c.loadProgress.connect(window.load_progress.set_progress)
        c.modelLoaded.connect(self._on_model_loaded)
        c.modelLoadFailed.connect(self._on_model_load_failed)
        c.modelUnloaded.connect(self._on_model_unloaded)

    @property
    def loading(self) -> bool:
        return self._loading_path is not None

    # -- identity

    def model_key(self, path: Path | None = None) -> str:
        """The key presets are saved under for ``path`` (default: the loaded model)."""
        return self._identify(path)[0]

    def model_name(self, path: Path | None = None) -> str | None:
        """The name shown for ``path`` (default: the loaded model); None when nothing is loaded."""
        return self._identify(path)[1] or None

    def _identify(self, path: Path | None) -> tuple[str, str]:
        """(preset key, display name) of ``path`` or of the loaded model, which is remembered:
        replies ask for it on every send, and a library lookup reads the disk."""
        if path is None:
            loaded = self.window.controller.loaded
            if loaded is None:
                return "", ""
            if self._loaded_identity is not None and self._loaded_identity[0] == loaded.path:
                return self._loaded_identity[1]
            identity = self._identify(loaded.path)
            self._loaded_identity = (loaded.path, identity)
            return identity
        try:
            found = self.library.find(str(path))
        except LlamaDeskError:
            found = None
        if found is not None:
            return str(found.key), str(found.name)
        starter = starter_model_path()
        name = STARTER_MODEL_NAME if starter is not None and Path(path) == starter else Path(path).stem
        return str(path), name

    # -- the library and the picker

    @property
    def library(self) -> Library:
        """The model library, created on first use (the start-up scan usually made it already)."""
        if self._library is None:
            self._library = self._library_factory(self.models_dir_setting())
        return self._library

    def models_dir_setting(self) -> Path | None:
        folder = self.window.settings.app.models_dir
        return Path(folder).expanduser() if folder else None

    @property
    def library_ready(self) -> bool:
        return self._library is not None and not self._scanning

    def start_library_scan(self, *, restore_last_model: bool = True) -> None:
        """List the models in the background (importing the library and reading GGUF headers
        takes a moment), then fill the picker and, at start-up, load the last model."""
        window = self.window
        models_dir = self.models_dir_setting()
        library = self._library
        factory = self._library_factory

        def scan() -> tuple[Library, list[Any]]:
            from ..engine import detect_hardware

            found = library if library is not None else factory(models_dir)
            models = found.list()
            detect_hardware()  # cached: the first plan does not wait for it on the GUI thread
            return found, models

        def scanned(result: tuple[Library, list[Any]]) -> None:
            self._scanning = False
            if self._library is None:
                self._library = result[0]
            self._fill_picker(result[1])
            if restore_last_model:
                self.restore_last_model()

        def failed(error: LlamaDeskError) -> None:
            self._scanning = False
            window.show_error(f"The model list could not be read: {error}")

        self._scanning = True
        window.tasks.run(scan, scanned, failed, channel="library-scan")

    def use_models_dir(self) -> None:
        """Point the library and new downloads at the models folder from the settings, and list it."""
        window = self.window
        folder = self.models_dir_setting() or window.paths.models_dir
        if self._library is not None:
            self._library.models_dir = folder
            self.start_library_scan(restore_last_model=False)
        window.hub.set_models_dir(folder)  # running downloads finish where they started

    def refresh_models(self) -> None:
        """List the models again in the background and fill the picker (after an import, a
        download or a change in My models); ``modelsListed`` says when it is done."""
        self.start_library_scan(restore_last_model=False)

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
        window = self.window
        hardware: Hardware | None = None
        entries = []
        for model in models:
            if getattr(model, "kind", "model") != "model":
                continue
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
            entries.append(
                ModelEntry(
                    key=model.key,
                    name=model.name,
                    path=Path(model.path),
                    size=int(model.size),
                    quantization=getattr(model, "quantization", None) or (info.file_type if info else ""),
                    fit_label=fit,
                    ok=model.state == "ok",
                    message=model.message or "",
                )
            )
        window.model_picker.set_models(entries)
        self.reset_picker()
        self.modelsListed.emit()

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
        try:
            self.library.import_model(path, copy=False)
        except LlamaDeskError as exc:
            self.window.show_error(str(exc), "Choose another .gguf file.", topic="model")
            return
        self.refresh_models()
        self.load_model(path)

    def load_model(self, path: Path, *, confirm: bool = True) -> bool:
        """Check that the model can work here, then load it on the inference thread.

        False when it did not start: busy, an unreadable file, or a "may not fit" question is open.
        """
        from ..engine import EngineError, inspect_gguf

        window = self.window
        if window.controller.busy:
            window.show_info("Wait for the current reply or load to finish first.")
            self.reset_picker()
            return False
        try:
            info = inspect_gguf(path)
        except EngineError as exc:
            self.reset_picker()
            window.show_error(str(exc), "Choose another model file.", topic="model")
            return False
        runtime = self.runtime_for(self.model_key(path))
        if confirm:
            try:
                hardware = self.planning_hardware()
            except Exception:  # the plan is advice; never block a load on it
                log.exception("reading this machine's memory failed")
            else:
                check = load_policy.check_load(info, hardware, runtime.n_ctx, runtime.n_gpu_layers)
                if check.warning is not None:
                    self._ask_load_anyway(Path(path), info, runtime, check.warning)
                    return False
        self._start_load(Path(path), runtime)
        return True

    def _start_load(self, path: Path, runtime: RuntimeSettings) -> None:
        window = self.window
        if window.controller.busy:  # e.g. another load began while the fit warning was open
            window.show_info("Wait for the current reply or load to finish first.")
            self.reset_picker()
            return
        key = self.model_key(path)
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
        """Load the current model again (after runtime settings changed)."""
        loaded = self.window.controller.loaded
        if loaded is not None:
            self.load_model(loaded.path, confirm=False)

    def unload_model(self) -> None:
        controller = self.window.controller
        if controller.loaded is not None and not controller.busy:
            controller.unload()

    def restore_last_model(self) -> None:
        """Load the model used last time, if it is still there and usable."""
        last = self.window.settings.app.last_model
        if not last or not Path(last).is_file():
            return
        try:
            found = self.library.find(last)
        except LlamaDeskError:
            found = None
        if found is not None and found.state != "ok":
            return
        self.load_model(Path(last), confirm=False)

    def reset_picker(self) -> None:
        """Show the model being loaded, else the loaded one, after a choice that was not taken."""
        loaded = self.window.controller.loaded
        self.window.model_picker.set_current_path(self._loading_path or (loaded.path if loaded else None))

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
