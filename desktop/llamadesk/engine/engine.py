"""The Engine: one loaded GGUF model, tokenization and streaming generation.

Not thread-safe, like ``llama_cpp.Llama`` itself: the app keeps it on one inference
thread. Only ``stop_event`` is meant to be set from another thread; it halts generation
within one token and interrupts a long prompt evaluation through llama.cpp's abort
callback.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import GenerationSettings, RuntimeSettings
from . import rpc, runtime
from .errors import EngineError
from .gguf_info import GGUFInfo, inspect_gguf
from .hardware import detect_hardware, memory
from .kv_options import GGML_TYPES, context_flash_attention, resolve_flash_attention
from .kv_shift import NO_SHIFT_ARCHITECTURES, apply_shift, can_shift, plan_reuse
from .planner import FitPlan, gpu_layers_for_context, plan_fit
from .states import cache_fingerprint, capture_state, restore_state

log = logging.getLogger(__name__)


class StopReason(str, Enum):
    """Why a reply ended."""

    EOS = "eos"
    MAX_TOKENS = "max_tokens"
    STOP_STRING = "stop_string"
    USER = "user_stop"
    CONTEXT_FULL = "context_full"
    ERROR = "error"

    @property
    def label(self) -> str:
        return {
            "eos": "finished",
            "max_tokens": "max tokens reached",
            "stop_string": "stop string",
            "user_stop": "stopped",
            "context_full": "context full",
            "error": "error",
        }[self.value]


@dataclass
class GenerationStats:
    """What one generation cost and why it ended."""

    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    ttft_s: float
    tokens_per_s: float
    total_s: float
    stop_reason: StopReason
    error: str | None = None
    restored_from: str = ""  # "memory" or "disk": the conversation's saved cache was loaded first
    shifted_tokens: int = 0  # tokens of the oldest turns cut from the cache in place (context shift)
    left_out: int = 0  # messages of the conversation the model did not see (the oldest, to fit)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop_reason"] = self.stop_reason.value
        return data


def _physical_cores() -> int:
    count = os.cpu_count() or 2
    try:  # Linux: count unique (physical id, core id) pairs
        cores: set[tuple[str, str]] = set()
        phys = core = ""
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                    cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, count // 2) if count > 4 else count


def _partial_stop(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could be the beginning of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Generation:
    """A streaming reply: iterate for text pieces; ``stats`` is set when it ends."""

    def __init__(self, pieces: Iterator[str]) -> None:
        self._pieces = pieces
        self.stats: GenerationStats | None = None
        self.text = ""

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self.text += piece
            yield piece


class Engine:
    """Owns at most one ``llama_cpp.Llama``; see the module docstring for threading."""

    def __init__(self) -> None:
        self._llm: Any = None
        self.info: GGUFInfo | None = None
        self.plan: FitPlan | None = None
        self.n_ctx = 0
        self.n_gpu_layers = 0
        self.backend = "CPU"
        self.ram_used = 0
        self.kv_cache_type = "f16"
        self.flash_attention = "auto"
        self.fingerprint = ""  # what the cache depends on besides its tokens (see ``states``)
        self._can_shift = False
        self._active_stop: threading.Event | None = None
        self._abort_cb: Any = None

    @property
    def is_loaded(self) -> bool:
        return self._llm is not None

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (for benchmarks and diagnostics)."""
        return self._require()

    def load(
        self,
        path: str | Path,
        runtime_settings: RuntimeSettings | None = None,
        *,
        progress: Callable[[float], bool] | None = None,
    ) -> None:
        """Load a model; the planner fills in whatever the settings leave automatic.

        ``progress`` gets 0..1 and may return False to cancel (then EngineError "cancelled").
        """
        rs = runtime_settings or RuntimeSettings()
        info = inspect_gguf(path)  # a bad file is refused before the loaded model goes
        # Free the current model first: its memory is what the new one will use, and planning
        # with it still loaded would cut the new model's context or GPU layers for nothing.
        self.unload()
        hw = detect_hardware()
        kv_type = rs.kv_cache_type
        resolve_flash_attention(rs.flash_attn, kv_type, gpu=False)  # refuse a bad pair before anything else
        plan = plan_fit(info, hw, n_ctx=rs.n_ctx, n_gpu_layers=rs.n_gpu_layers, kv_cache_type=kv_type)
        n_ctx = rs.n_ctx or plan.n_ctx
        if info.context_length and rs.n_ctx == 0:
            n_ctx = min(n_ctx, info.context_length)
        n_gpu_layers = plan.n_gpu_layers if rs.n_gpu_layers == -2 else rs.n_gpu_layers
        if rs.n_gpu_layers == -2 and (not plan.fits or n_ctx > plan.n_ctx):
            # Loading more than fits ("Load anyway"): offload what the GPU holds at this context.
            n_gpu_layers = gpu_layers_for_context(info, hw, n_ctx, kv_cache_type=kv_type)
        if not hw.gpu_offload:
            n_gpu_layers = 0
        flash = resolve_flash_attention(rs.flash_attn, kv_type, gpu=n_gpu_layers != 0)
        threads = rs.n_threads or _physical_cores()
        module = runtime.llama_cpp()
        runtime.clear_recent()
        cancelled = False
        callback_error: BaseException | None = None

        def on_progress(value: float) -> bool:
            nonlocal cancelled, callback_error
            if progress is None:
                return True
            try:
                keep_going = bool(progress(value))
            except BaseException as exc:  # llama.cpp would swallow it and blame the file
                callback_error, keep_going = exc, False
            cancelled = not keep_going
            return keep_going

        log.info(
            "loading %s (n_ctx=%s, n_gpu_layers=%s, threads=%s)", info.path, n_ctx, n_gpu_layers, threads
        )
        if rs.workers:  # llama.cpp RPC (rpc.py): every layer offloaded, split over the workers and local GPUs
            n_gpu_layers = -1
        try:
            kv_type_id = GGML_TYPES[kv_type]
            kv_args = {"type_k": kv_type_id, "type_v": kv_type_id} if kv_type != "f16" else {}
            with (
                runtime.load_progress(on_progress if progress else None),
                context_flash_attention(module, flash),
                rpc.use_workers(module, rs.workers),  # probes each worker first: a clear error, not an abort
            ):
                llm = module.Llama(
                    model_path=str(info.path),
                    n_ctx=n_ctx,
                    n_gpu_layers=n_gpu_layers,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_batch=min(rs.n_batch, n_ctx),
                    n_ubatch=min(rs.n_batch, n_ctx),
                    flash_attn=flash == "on",
                    use_mmap=rs.use_mmap,
                    use_mlock=rs.use_mlock,
                    verbose=False,
                    **kv_args,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            if callback_error is not None:
                raise callback_error from exc
            if cancelled:
                raise EngineError("Loading was cancelled.") from exc
            detail = "; ".join(runtime.recent_errors()[-3:])
            reason = f" llama.cpp said: {detail}" if detail else ""
            if kv_type != "f16" or flash == "on":
                raise EngineError(
                    f"llama.cpp could not load {info.path.name} with a {kv_type} KV cache and flash "
                    f"attention {flash}.{reason} This build or device may not support them for this model: "
                    "set the KV cache type to f16 and Flash attention to Auto "
                    "(Preferences → Model & hardware)."
                ) from exc
            raise EngineError(
                f"llama.cpp could not load {info.path.name} ({info.architecture}, {info.file_type}).{reason} "
                "The file may be damaged, or made for a newer llama.cpp than this build."
            ) from exc
        if callback_error is not None:  # the load went through, but whoever watched it failed
            llm.close()
            raise callback_error
        self._llm = llm
        self.info = info
        self.plan = plan
        # llama.cpp rounds the context up (to 256); llama-cpp-python's token buffer keeps the size asked for.
        self.n_ctx = min(int(llm.n_ctx()), len(llm.input_ids))
        self.n_gpu_layers = n_gpu_layers
        self.kv_cache_type, self.flash_attention = kv_type, flash
        self.fingerprint = cache_fingerprint(info.path, n_ctx=self.n_ctx, kv_cache_type=kv_type, flash=flash)
        self._can_shift = can_shift(llm) and info.architecture not in NO_SHIFT_ARCHITECTURES
        self.backend = hw.backend if n_gpu_layers else "CPU"
        # What loading took from the RAM the system counts as available (weights not on the GPU,
        # KV cache, buffers); planning another model adds it back, as switching frees it.
        self.ram_used = max(hw.available_ram - memory()[1], 0)
        self._install_abort(module)

    def _install_abort(self, module: Any) -> None:
        # llama.cpp polls this during prompt evaluation, so a long prompt stops quickly too.
        @module.llama_cpp.ggml_abort_callback
        def should_abort(_data: Any) -> bool:
            stop = self._active_stop
            stopping = stop is not None and stop.is_set()
            if stopping:
                runtime.set_stopping(True)
            return stopping

        self._abort_cb = should_abort
        module.llama_cpp.llama_set_abort_callback(self._llm._ctx.ctx, should_abort, ctypes.c_void_p(0))

    def unload(self) -> None:
        """Free the model; safe to call when nothing is loaded."""
        llm, self._llm = self._llm, None
        self.info = None
        self.plan = None
        self.n_ctx = 0
        self.ram_used = 0
        self.fingerprint = ""
        self._can_shift = False
        if llm is not None:
            llm.close()
        self._abort_cb = None

    close = unload

    def _require(self) -> Any:
        if self._llm is None:
            raise EngineError("No model is loaded. Choose a model first.")
        return self._llm

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]:
        """Token ids of ``text``; chat prompts already carry their BOS, so none is added."""
        # Lone surrogates (a raw prompt from an API client, say) would make encode() raise.
        data = text.encode("utf-8", "replace")
        return list(self._require().tokenize(data, add_bos=add_bos, special=special))

    def detokenize(self, tokens: list[int], *, special: bool = False) -> str:
        """The text of ``tokens``; ``special`` writes control tokens (``<|im_end|>``) as text too."""
        return bytes(self._require().detokenize(tokens, special=special)).decode("utf-8", errors="replace")

    # -- the KV cache (context shift and saved states; see kv_shift.py and states.py)

    @property
    def can_shift(self) -> bool:
        """Whether this model's cache can leave out old turns in place (not recurrent models, say)."""
        return self._llm is not None and self._can_shift

    def cached_tokens(self) -> list[int]:
        """The tokens the cache holds now, oldest first."""
        llm = self._require()
        return [int(t) for t in llm.input_ids[: llm.n_tokens]]

    def reuse_cache(self, tokens: Sequence[int], *, head: int | None) -> int:
        """Before replying to ``tokens``: when the oldest turns were left out after the first ``head``
        tokens, shift the cache over them instead of reading the rest again. Returns the tokens cut."""
        llm = self._require()
        if head is None or not self._can_shift:
            return 0
        plan = plan_reuse(llm.input_ids[: llm.n_tokens], tokens, head=head)
        if not plan.shifts or not apply_shift(llm, plan):
            return 0
        log.debug("context shift: %d tokens cut, %d moved back", plan.cut, plan.moved)
        return plan.cut

    def save_state(self) -> tuple[np.ndarray, bytearray] | None:
        """The cache's tokens and llama.cpp's bytes for them (None when it is empty)."""
        return capture_state(self._require())

    def restore_state(self, tokens: Sequence[int] | np.ndarray, data: bytearray) -> bool:
        """Replace the cache with a saved state; False (and an empty cache) when llama.cpp refuses it."""
        return restore_state(self._require(), np.asarray(tokens, dtype=np.int32), data)

    def generate(
        self,
        prompt: str | list[int],
        settings: GenerationSettings,
        *,
        stop_event: threading.Event | None = None,
        extra_stop: Sequence[str] = (),
        grammar: Any = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        special: bool = False,
    ) -> Generation:
        """Stream a reply to ``prompt`` (text or token ids) with ``settings``.

        ``grammar`` (a ``llama_cpp.LlamaGrammar``) constrains the tokens sampled, e.g. to valid JSON.
        ``frequency_penalty`` and ``presence_penalty`` (-2..2, OpenAI's meaning, 0 = off) lower the odds
        of tokens already written. ``special``: control tokens the model writes reach the text (gpt-oss
        channel markers, which tell its thinking from its answer); end-of-turn tokens still end the reply.
        """
        for name, value in (("frequency_penalty", frequency_penalty), ("presence_penalty", presence_penalty)):
            if not -2.0 <= value <= 2.0:
                raise EngineError(f"{name} must be between -2 and 2, not {value}.")
        llm = self._require()
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not tokens:
            raise EngineError("The prompt is empty.")
        if len(tokens) >= self.n_ctx:
            raise EngineError(
                f"The prompt is {len(tokens):,} tokens but the context holds {self.n_ctx:,}. "
                "Shorten the conversation or raise the context length in Preferences."
            )
        generation = Generation(iter(()))
        generation._pieces = self._stream(
            llm,
            tokens,
            settings,
            stop_event,
            list(extra_stop),
            generation,
            grammar=grammar,
            penalties=(frequency_penalty, presence_penalty),
            special=special,
        )
        return generation

    def _stream(
        self,
        llm: Any,
        tokens: list[int],
        s: GenerationSettings,
        stop_event: threading.Event | None,
        extra_stop: list[str],
        generation: Generation,
        grammar: Any = None,
        penalties: tuple[float, float] = (0.0, 0.0),
        special: bool = False,
    ) -> Iterator[str]:
        stop_event = stop_event or threading.Event()
        stops = [x for x in (*s.stop, *extra_stop) if x]
        start = time.perf_counter()
        if s.seed >= 0:
            # A fixed seed promises the same reply for the same prompt. Logits computed in a
            # different batch shape differ in the last bits, so re-read the whole prompt.
            llm.reset()
            cached = 0
        else:
            cached = _common_prefix(llm._input_ids[: llm.n_tokens].tolist(), tokens)
            if cached >= len(tokens):
                cached = len(tokens) - 1
        llm.set_seed(random.randint(0, 2**31 - 1) if s.seed < 0 else s.seed)
        vocab = llm._model.vocab
        module = runtime.llama_cpp()
        max_new = min(s.max_tokens, self.n_ctx - len(tokens))
        completion = 0
        first_at: float | None = None
        reason = StopReason.MAX_TOKENS
        error: str | None = None
        pending = b""
        text = ""  # decoded text not yet released (may hide a stop string's start)
        self._active_stop = stop_event
        runtime.set_stopping(False)
        gen = llm.generate(
            tokens,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            temp=s.temperature,
            repeat_penalty=s.repeat_penalty,
            frequency_penalty=penalties[0],
            presence_penalty=penalties[1],
            grammar=grammar,
        )
        try:
            for token in gen:
                if first_at is None:
                    first_at = time.perf_counter()
                if stop_event.is_set():
                    reason = StopReason.USER
                    break
                if module.llama_vocab_is_eog(vocab, token):
                    reason = StopReason.EOS
                    break
                completion += 1
                pending += bytes(llm.detokenize([token], special=special))
                try:
                    piece = pending.decode("utf-8")
                    pending = b""
                except UnicodeDecodeError:
                    piece = ""
                    if len(pending) > 8:
                        piece, pending = pending.decode("utf-8", errors="replace"), b""
                text += piece
                if stops:
                    hit = min((i for i in (text.find(x) for x in stops) if i >= 0), default=-1)
                    if hit >= 0:
                        if hit:
                            yield text[:hit]
                        text = ""
                        reason = StopReason.STOP_STRING
                        break
                    # Hold back only what may be the start of a stop string, not a fixed tail:
                    # the first piece of a reply reaches the reader with its first token.
                    release = len(text) - _partial_stop(text, stops)
                    if release > 0:
                        yield text[:release]
                        text = text[release:]
                elif text:
                    yield text
                    text = ""
                if completion >= max_new:
                    reason = StopReason.MAX_TOKENS if completion >= s.max_tokens else StopReason.CONTEXT_FULL
                    break
                if stop_event.is_set():
                    reason = StopReason.USER
                    break
        except GeneratorExit:
            reason = StopReason.USER
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            # llama-cpp-python raises RuntimeError from llama_decode and NumPy errors when its
            # buffers don't fit (a tiny context): the reply ends as failed, never as complete.
            if stop_event.is_set() and isinstance(exc, RuntimeError):
                reason = StopReason.USER
            else:
                log.debug("generation failed", exc_info=True)
                reason, error = StopReason.ERROR, f"llama.cpp failed while generating: {exc}"
        finally:
            with contextlib.suppress(Exception):
                gen.close()
            self._active_stop = None
            tail = text + (pending.decode("utf-8", errors="replace") if pending else "")
            end = time.perf_counter()
            ttft = (first_at or end) - start
            decode_time = end - (first_at or end)
            tps = (completion - 1) / decode_time if completion > 1 and decode_time > 0 else 0.0
            generation.stats = GenerationStats(
                prompt_tokens=len(tokens),
                cached_tokens=max(cached, 0),
                completion_tokens=completion,
                ttft_s=ttft,
                tokens_per_s=tps,
                total_s=end - start,
                stop_reason=reason,
                error=error,
            )
        if tail and reason is not StopReason.STOP_STRING:
            yield tail

    def __del__(self) -> None:  # pragma: no cover - last resort; the app calls unload()
        with contextlib.suppress(Exception):
            if self._llm is not None:
                self._llm.close()
