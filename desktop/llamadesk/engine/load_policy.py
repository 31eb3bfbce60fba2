"""Whether a model can load here, and what to tell the user before loading it (no Qt).

The window, the model picker and Preferences all ask the same questions: how this machine
looks to a model about to load (the model loaded now is freed first), what the picker's fit
label says, and whether a load needs a warning ("too large", or "fits only with a smaller
context") with the texts and the smaller context to offer. The answers live here, so every
front end words them the same way and they can be tested without a display.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .gguf_info import GGUFInfo
from .hardware import Hardware
from .planner import FitPlan, WorkerPlan, estimate_memory, plan_fit, plan_workers

log = logging.getLogger(__name__)

__all__ = [
    "FitWarning",
    "LoadCheck",
    "auto_gpu_layers",
    "check_load",
    "check_worker_load",
    "fit_label",
    "fit_warning",
    "needs_warning",
    "planning_hardware",
    "worker_plan",
]

WARNING_TITLE = "This model may not fit"


def planning_hardware(hardware: Hardware, freed_ram: int = 0) -> Hardware:
    """``hardware`` as a model about to load will find it: the model loaded now (which took
    ``freed_ram`` bytes of available RAM) is freed first, so that memory counts as free."""
    if freed_ram <= 0:
        return hardware
    available = min(hardware.available_ram + freed_ram, hardware.total_ram)
    return dataclasses.replace(hardware, available_ram=available)


def plan_for(info: GGUFInfo, hardware: Hardware, n_ctx: int, n_gpu_layers: int) -> FitPlan:
    """The planner's answer for a load with these runtime settings (0 context = automatic)."""
    return plan_fit(info, hardware, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers)


def needs_warning(plan: FitPlan, n_ctx: int) -> bool:
    """True when loading as set would not fit: too large, or only with less than ``n_ctx`` context."""
    return plan.verdict == "too_large" or (n_ctx > 0 and plan.n_ctx < n_ctx)


def fit_label(plan: FitPlan, n_ctx: int) -> str:
    """The picker's short verdict; when only a smaller context fits, it says so before the user picks."""
    if plan.verdict != "too_large" and n_ctx and plan.n_ctx < n_ctx:
        return f"Fits with ≤ {plan.max_ctx:,} tokens of context"
    return plan.label


@dataclass(frozen=True)
class FitWarning:
    """What to ask before a load that may not fit.

    ``smaller_ctx`` is the largest context that fits (offered as "Load with N tokens"), or None
    when no context fits; "Load anyway" and "Cancel" are always offered.
    """

    title: str
    text: str
    informative: str
    smaller_ctx: int | None
    anyway_button: str = "Load anyway"

    @property
    def smaller_button(self) -> str:
        """The text of the button that loads with ``smaller_ctx`` ("" when there is none)."""
        return f"Load with {self.smaller_ctx:,} tokens" if self.smaller_ctx else ""


def fit_warning(info: GGUFInfo, plan: FitPlan, n_ctx: int) -> FitWarning:
    """The warning for a load that ``needs_warning``: why it may not fit, and what does fit."""
    wanted = n_ctx or plan.n_ctx
    if plan.verdict == "too_large":
        text = plan.summary
    else:
        need = estimate_memory(info, wanted).total
        text = (
            f"With a context of {wanted:,} tokens it needs about {need / 1e9:.1f} GB, "
            "more memory than this machine has free."
        )
    if plan.max_ctx:
        informative = (
            f"It fits with a context of up to {plan.max_ctx:,} tokens (set now: {wanted:,}). "
            "Loading it as it is may make your computer very slow or fail."
        )
        return FitWarning(WARNING_TITLE, text, informative, plan.max_ctx)
    anyway = "Loading it anyway may make your computer very slow or fail."
    return FitWarning(WARNING_TITLE, text, anyway, None)


@dataclass(frozen=True)
class LoadCheck:
    """The decision before a load: ``warning`` is None when it can go ahead as set."""

    plan: FitPlan | None
    warning: FitWarning | None


def check_load(info: GGUFInfo, hardware: Hardware, n_ctx: int, n_gpu_layers: int) -> LoadCheck:
    """Plan a load and decide whether it needs a warning first.

    The plan is advice: a planner failure is logged and never blocks the load.
    """
    try:
        plan = plan_for(info, hardware, n_ctx, n_gpu_layers)
    except Exception:
        log.exception("planning the load of %s failed", info.path)
        return LoadCheck(None, None)
    if needs_warning(plan, n_ctx):
        return LoadCheck(plan, fit_warning(info, plan, n_ctx))
    return LoadCheck(plan, None)


def auto_gpu_layers(info: GGUFInfo, hardware: Hardware, n_ctx: int) -> int | None:
    """What "Auto" GPU layers would choose for this model at ``n_ctx``; None if planning fails."""
    try:
        return plan_for(info, hardware, n_ctx, -2).n_gpu_layers
    except Exception:  # the label is advice
        log.exception("planning %s failed", info.path)
        return None


def worker_plan(
    info: GGUFInfo,
    hardware: Hardware,
    workers: Sequence[tuple[str, Sequence[tuple[int, int]]]],
    n_ctx: int = 0,
    kv_cache_type: str = "f16",
) -> WorkerPlan:
    """How a load spread over RPC workers would split ``info``: ``workers`` are (address, each device's
    (free, total) bytes) as a probe found them; this machine's GPUs come after them, as in llama.cpp."""
    devices: list[tuple[str, int]] = []
    for address, memories in workers:
        for index, (free, _total) in enumerate(memories):
            devices.append((address if index == 0 else f"{address}#{index}", free))
    if hardware.gpu_offload:
        devices += [(gpu.name, gpu.vram_free) for gpu in hardware.gpus]
    return plan_workers(info, devices, n_ctx=n_ctx, kv_cache_type=kv_cache_type)


def check_worker_load(
    info: GGUFInfo,
    hardware: Hardware,
    workers: Sequence[tuple[str, Sequence[tuple[int, int]]]],
    n_ctx: int = 0,
    kv_cache_type: str = "f16",
) -> tuple[WorkerPlan, FitWarning | None]:
    """The split over probed workers (see ``worker_plan``) and, when a share won't fit, the warning
    to ask first; the window shows ``plan.summary`` before a load with workers either way."""
    plan = worker_plan(info, hardware, workers, n_ctx, kv_cache_type)
    if plan.fits:
        return plan, None
    text = "Spread over the workers, this model may not fit: some have less free memory than their share."
    informative = f"{plan.summary} Loading it anyway may fail or make those machines very slow."
    return plan, FitWarning(WARNING_TITLE, text, informative, None)
