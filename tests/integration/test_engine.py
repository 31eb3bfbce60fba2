"""The Engine on the real starter model: determinism, stop, prefix reuse, limits, bad files."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.engine import Engine, EngineError, ModelFileError, StopReason, detect_hardware
from llamadesk.settings import MIN_CONTEXT, GenerationSettings, RuntimeSettings

pytestmark = pytest.mark.model

END = "<|im_end|>"


def chatml(*turns: tuple[str, str], open_reply: bool = True) -> str:
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return text + ("<|im_start|>assistant\n" if open_reply else "")


@pytest.fixture(scope="module")
def engine(starter_model: Path) -> Iterator[Engine]:
    eng = Engine()
    eng.load(starter_model, RuntimeSettings(n_ctx=2048, n_threads=2))
    yield eng
    eng.unload()


def test_loaded_facts(engine: Engine) -> None:
    assert engine.is_loaded
    assert engine.n_ctx == 2048
    hardware = detect_hardware()
    if hardware.gpu_offload:  # a CUDA or Metal build: the tiny model goes on the GPU
        assert engine.backend == hardware.backend != "CPU" and engine.n_gpu_layers > 0
    else:
        assert engine.backend == "CPU" and engine.n_gpu_layers == 0
    assert engine.info is not None and engine.info.architecture == "llama"


def test_same_seed_same_text(engine: Engine) -> None:
    prompt = chatml(("user", "Name three colours."))
    settings = GenerationSettings(seed=1234, temperature=0.9, max_tokens=40)
    first = engine.generate(prompt, settings, extra_stop=[END])
    text1 = "".join(first)
    second = engine.generate(prompt, settings, extra_stop=[END])
    text2 = "".join(second)
    assert text1 and text1 == text2
    assert first.stats is not None and second.stats is not None
    assert first.stats.completion_tokens == second.stats.completion_tokens > 0
    assert END not in text1


def test_max_tokens_is_obeyed(engine: Engine) -> None:
    gen = engine.generate(
        chatml(("user", "Tell me a long story about a llama.")), GenerationSettings(max_tokens=5)
    )
    "".join(gen)
    assert gen.stats is not None
    assert gen.stats.completion_tokens == 5
    assert gen.stats.stop_reason is StopReason.MAX_TOKENS


def test_stop_string_ends_reply_and_is_hidden(engine: Engine) -> None:
    settings = GenerationSettings(seed=7, temperature=0.0, max_tokens=60)
    prompt = chatml(("user", "Count from 1 to 10, separated by commas."))
    full = "".join(engine.generate(prompt, settings, extra_stop=[END]))
    assert len(full) > 20
    marker = full[12:16]
    gen = engine.generate(prompt, settings.model_copy(update={"stop": [marker]}), extra_stop=[END])
    text = "".join(gen)
    assert gen.stats is not None and gen.stats.stop_reason is StopReason.STOP_STRING
    assert text == full[: full.index(marker)]


def test_user_stop_within_one_token(engine: Engine) -> None:
    stop = threading.Event()
    gen = engine.generate(
        chatml(("user", "Write a very long essay about mountains.")),
        GenerationSettings(max_tokens=400, seed=3),
        stop_event=stop,
    )
    pieces = 0
    for _ in gen:
        pieces += 1
        if pieces == 10:
            stop.set()
    assert gen.stats is not None
    assert gen.stats.stop_reason is StopReason.USER
    assert gen.stats.completion_tokens <= 11
    assert pieces <= 11


def test_stop_during_long_prompt_evaluation(
    engine: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The abort callback interrupts prompt processing, not just token sampling."""
    import llama_cpp.llama_cpp as low

    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    long_prompt = chatml(("user", "word " * 1500))
    assert len(engine.tokenize(long_prompt)) > 2 * 512  # read in several batches
    stop = threading.Event()
    real_decode = low.llama_decode
    batches = 0

    def decode_then_stop(ctx: object, batch: object) -> int:
        nonlocal batches
        batches += 1
        result = int(real_decode(ctx, batch))
        if batches == 1:  # the first batch of the prompt is read: the user presses Stop
            stop.set()
        return result

    monkeypatch.setattr(low, "llama_decode", decode_then_stop)
    gen = engine.generate(long_prompt, GenerationSettings(max_tokens=50), stop_event=stop)
    text = "".join(gen)
    monkeypatch.setattr(low, "llama_decode", real_decode)
    assert gen.stats is not None
    assert gen.stats.stop_reason is StopReason.USER
    assert gen.stats.completion_tokens == 0 and text == ""
    assert batches == 2  # the second batch was aborted; the rest of the prompt was never read
    # llama.cpp's complaints about the aborted decode are the stop working: not shown as errors
    aborted = [r for r in caplog.records if "failed" in r.getMessage()]
    assert aborted and all(r.levelno == logging.DEBUG for r in aborted)
    # the next generation still works after an aborted evaluation
    again = engine.generate(chatml(("user", "Hi")), GenerationSettings(max_tokens=5, seed=1))
    assert "".join(again) and again.stats is not None and again.stats.error is None


def test_prefix_reuse_on_second_turn(engine: Engine) -> None:
    settings = GenerationSettings(max_tokens=30)
    turn1 = chatml(("system", "You are brief."), ("user", "What is a llama?"))
    reply = "".join(engine.generate(turn1, settings, extra_stop=[END]))
    turn2 = chatml(
        ("system", "You are brief."),
        ("user", "What is a llama?"),
        ("assistant", reply),
        ("user", "And an alpaca?"),
    )
    gen = engine.generate(turn2, settings, extra_stop=[END])
    "".join(gen)
    assert gen.stats is not None
    first_turn_tokens = len(engine.tokenize(turn1))
    assert gen.stats.cached_tokens >= first_turn_tokens
    assert gen.stats.cached_tokens < gen.stats.prompt_tokens


def test_prompt_longer_than_context_is_a_clear_error(engine: Engine) -> None:
    with pytest.raises(EngineError, match=r"context holds 2,048"):
        engine.generate(chatml(("user", "llama " * 3000)), GenerationSettings())


def test_context_full_stops_generation(starter_model: Path) -> None:
    eng = Engine()
    eng.load(starter_model, RuntimeSettings(n_ctx=MIN_CONTEXT, n_threads=2))
    try:
        prompt = chatml(("user", "Write a long poem."))
        gen = eng.generate(prompt, GenerationSettings(max_tokens=500, seed=5, temperature=1.0, min_p=0.0))
        "".join(gen)
        assert gen.stats is not None
        if gen.stats.stop_reason is not StopReason.EOS:
            assert gen.stats.stop_reason is StopReason.CONTEXT_FULL
            assert gen.stats.prompt_tokens + gen.stats.completion_tokens == 64
    finally:
        eng.unload()


def test_bos_not_doubled(engine: Engine) -> None:
    tokens = engine.tokenize(chatml(("user", "Hi")))
    bos = engine.llama.token_bos()
    assert tokens.count(bos) == tokens[:1].count(bos) + tokens[1:].count(bos)
    assert tokens[:2] != [bos, bos]


def test_bad_files_never_reach_llama_cpp(tmp_path: Path, starter_model: Path) -> None:
    eng = Engine()
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + b"\xff" * 4096)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(starter_model.read_bytes()[:5_000_000])
    for path, message in (
        (garbage, "GGUF version"),
        (truncated, "truncated"),
        (tmp_path / "nope.gguf", "not found"),
    ):
        with pytest.raises(ModelFileError, match=message):
            eng.load(path)
    assert not eng.is_loaded


def test_no_model_loaded() -> None:
    with pytest.raises(EngineError, match="No model is loaded"):
        Engine().generate("hi", GenerationSettings())


def test_load_can_be_cancelled(starter_model: Path) -> None:
    eng = Engine()
    seen: list[float] = []

    def progress(value: float) -> bool:
        seen.append(value)
        return value < 0.3

    with pytest.raises(EngineError, match="cancelled"):
        eng.load(starter_model, RuntimeSettings(n_ctx=256), progress=progress)
    assert seen and not eng.is_loaded


def test_switching_plans_after_the_old_model_is_freed(
    tmp_path: Path, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llamadesk.engine import engine as engine_module

    eng = Engine()
    eng.load(starter_model, RuntimeSettings(n_ctx=256, n_threads=2))
    assert eng.ram_used >= 0
    planned_with_model_loaded: list[bool] = []
    detect = engine_module.detect_hardware

    def watched(**kwargs: object) -> object:
        planned_with_model_loaded.append(eng.is_loaded)
        return detect()

    monkeypatch.setattr(engine_module, "detect_hardware", watched)
    # A bad file is refused while the current model stays loaded ...
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        eng.load(bad)
    assert eng.is_loaded and planned_with_model_loaded == []
    # ... and a good one is planned with the memory the current one held.
    eng.load(starter_model, RuntimeSettings(n_ctx=256, n_threads=2))
    assert planned_with_model_loaded == [False] and eng.is_loaded
    eng.unload()
    assert eng.ram_used == 0


def test_load_anyway_offloads_what_the_gpu_holds_at_the_larger_context(
    starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llamadesk.engine import GPUInfo, Hardware, inspect_gguf, plan_fit
    from llamadesk.engine import engine as engine_module
    from llamadesk.engine.planner import gpu_layers_for_context

    gib = 1024**3
    vram = int(0.85 * gib)  # all layers fit at a smaller context, not at 8,192 tokens
    gpu = Hardware(2 * gib, gib, 2, "CUDA", True, [GPUInfo("Test GPU", vram, vram)])
    monkeypatch.setattr(engine_module, "detect_hardware", lambda **_: gpu)
    info = inspect_gguf(starter_model)
    assert plan_fit(info, gpu, n_ctx=8192).n_gpu_layers == -1
    eng = Engine()
    # (this build may have no GPU backend; llama.cpp then keeps every layer on the CPU)
    eng.load(starter_model, RuntimeSettings(n_ctx=8192, n_threads=2))
    try:
        assert eng.n_ctx == 8192
        assert eng.n_gpu_layers == gpu_layers_for_context(info, gpu, 8192) and 0 < eng.n_gpu_layers < 30
    finally:
        eng.unload()
