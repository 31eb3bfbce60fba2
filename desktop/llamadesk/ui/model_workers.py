"""RPC workers in the window: before a load they are probed (off the GUI thread) and the split of the
layers is shown; after one was lost mid-reply (or mid-load) the window offers to reload without it.

Part of :class:`~llamadesk.ui.model_session.ModelSession`; the probing and the bookkeeping of lost
workers are the Qt-free :mod:`llamadesk.engine.rpc`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from ..engine import load_policy, rpc
from ..errors import LlamaDeskError
from ..settings import RuntimeSettings

if TYPE_CHECKING:
    from ..engine import GGUFInfo
    from .model_session import ModelSession

log = logging.getLogger(__name__)

__all__ = ["ModelWorkers"]


class ModelWorkers(QObject):
    """Probes the workers a load will use, and offers "Reload without …" when one was lost."""

    def __init__(self, session: ModelSession) -> None:
        super().__init__(session)
        self.session = session
        self._path: Path | None = None  # the model last loaded (or loading) with workers
        self._workers: tuple[str, ...] = ()  # the workers it was loaded with
        session.window.controller.generationFailed.connect(self._on_generation_failed)

    def plan(self, path: Path, info: GGUFInfo, runtime: RuntimeSettings, confirm: bool) -> None:
        """Probe ``runtime.workers`` on a worker thread, then say how the layers split (asking first
        when a share may not fit) and load; a worker that can't be used is named and nothing loads."""
        session, window = self.session, self.session.window
        session._checking = path
        window.update_state()

        def probed(found: list[rpc.WorkerInfo]) -> None:
            session._checking = None
            try:
                hardware = session.planning_hardware()
                memories = [(worker.endpoint, worker.devices) for worker in found]
                plan, warning = load_policy.check_worker_load(
                    info, hardware, memories, runtime.n_ctx, runtime.kv_cache_type
                )
            except Exception:  # the split is advice; never block a load on it
                log.exception("planning the split over the workers failed")
                session._start_load(path, runtime)
                return
            if warning is not None and confirm:
                session._ask_load_anyway(path, info, runtime, warning)
            else:
                window.show_info(plan.summary)
                session._start_load(path, runtime)
            window.update_state()

        def failed(error: LlamaDeskError) -> None:
            session._checking = None
            session.reset_picker()
            window.show_error(
                str(error),
                "Start the worker, or remove it in Preferences → Model & hardware → Workers.",
                topic="model",
            )
            window.update_state()

        workers = list(runtime.workers)
        window.tasks.run(lambda: rpc.probe_workers(workers), probed, failed, channel="model-check")

    def loading(self, path: Path, runtime: RuntimeSettings) -> None:
        """A load starts: remember which workers it uses."""
        self._path = path
        self._workers = tuple(rpc.parse_workers(runtime.workers))

    def lost(self) -> list[str]:
        """The workers of the last load that were lost since (empty when none was)."""
        gone = set(rpc.lost_workers())
        return [worker for worker in self._workers if worker in gone]

    def offer_reload(self, message: str) -> bool:
        """If the last load's workers were lost: show ``message`` with "Reload without …"; True if shown."""
        lost, path = self.lost(), self._path
        if not lost or path is None:
            return False

        def reload() -> None:
            self.reload_without(path, lost)

        self.session.window.banner.show_message(
            message, "error", action_text=f"Reload without {', '.join(lost)}", action=reload, topic="model"
        )
        return True

    def reload_without(self, path: Path, lost: list[str]) -> bool:
        """Load ``path`` again with its runtime settings but without the ``lost`` workers (this load
        only: Preferences keep the list). False when a reply or a load runs."""
        session = self.session
        runtime = session.runtime_for(session.model_key(path))
        remaining = [worker for worker in rpc.parse_workers(runtime.workers) if worker not in lost]
        return session.load_model(
            path, confirm=False, runtime=runtime.model_copy(update={"workers": remaining})
        )

    def _on_generation_failed(self, message: str) -> None:
        """A reply failed; when its worker was lost the service let go of the model: the window follows."""
        window = self.session.window
        if window.closed or not self.lost() or window.controller.loaded is None:
            return
        window.controller.unload()  # the service holds no model now; this only tells the window
        self.offer_reload(message)
