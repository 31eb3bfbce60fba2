"""The inference service with the real starter model: one owner of the model, many clients."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.engine import Engine, EngineError
from llamadesk.engine.service import ChatResult, InferenceService, LoadedModel
from llamadesk.settings import GenerationSettings, RuntimeSettings

pytestmark = pytest.mark.model

STORY = [{"role": "user", "content": "Write a very long story about the sea and its sailors."}]


@pytest.fixture(scope="module")
def service(starter_model: Path) -> Iterator[InferenceService]:
    svc = InferenceService()
    job = svc.load(starter_model, RuntimeSettings(n_ctx=1024, n_threads=2), client="test")
    assert job.wait(120)
    assert job.error is None, job.error
    assert isinstance(job.result, LoadedModel) and svc.loaded is job.result
    yield svc
    assert svc.close(timeout=10)


def test_one_clients_stop_leaves_another_clients_reply_alone(service: InferenceService) -> None:
    first_piece = threading.Event()
    window = service.chat(
        STORY,
        GenerationSettings(max_tokens=200, seed=1),
        on_text=lambda _p: first_piece.set(),
        client="window",
    )
    api = service.chat(STORY, GenerationSettings(max_tokens=12, seed=2), client="api")
    assert first_piece.wait(60)
    window.stop()
    assert window.wait(60) and api.wait(60)
    assert window.error is None and api.error is None
    assert window.result.stats.stop_reason.value == "user_stop"
    assert api.result.stats.stop_reason.value == "max_tokens"
    assert api.result.stats.completion_tokens == 12


def test_a_queued_job_stopped_before_it_runs_never_runs(service: InferenceService) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow_reader(_piece: str) -> None:
        started.set()
        release.wait(30)

    busy = service.chat(STORY, GenerationSettings(max_tokens=3, seed=1), on_text=slow_reader, client="a")
    queued = service.chat(STORY, GenerationSettings(max_tokens=3, seed=1), client="b")
    assert started.wait(60)
    queued.stop()
    release.set()
    assert busy.wait(60) and queued.wait(60)
    assert busy.error is None
    assert queued.error is not None and queued.error.kind == "cancelled"


def test_stop_all_of_one_client(service: InferenceService) -> None:
    started = threading.Event()
    mine = service.chat(
        STORY, GenerationSettings(max_tokens=300), on_text=lambda _p: started.set(), client="x"
    )
    other = service.chat(STORY, GenerationSettings(max_tokens=4, seed=3), client="y")
    assert started.wait(60)
    service.stop_all("x")
    assert mine.wait(60) and other.wait(60)
    assert mine.result.stats.stop_reason.value == "user_stop"
    assert other.result.stats.completion_tokens == 4


def test_a_message_too_long_for_the_context_is_refused_with_nothing_generated(
    service: InferenceService,
) -> None:
    texts: list[str] = []
    job = service.chat(
        [{"role": "user", "content": "word " * 2000}], GenerationSettings(max_tokens=16), on_text=texts.append
    )
    assert job.wait(60)
    assert job.error is not None and job.error.kind == "too_long"
    assert "tokens" in str(job.error) and texts == []


def test_fit_reports_dropped_turns_and_the_reply_is_the_streamed_text(service: InferenceService) -> None:
    history: list[dict[str, str]] = []
    for turn in range(12):
        history += [{"role": "user", "content": f"Question {turn}: " + "tell me more " * 25}]
        history += [{"role": "assistant", "content": "Here is more. " * 25}]
    history.append({"role": "user", "content": "Summarise."})
    fits: list[object] = []
    pieces: list[str] = []
    job = service.chat(
        history, GenerationSettings(max_tokens=8, seed=4), on_fit=fits.append, on_text=pieces.append
    )
    assert job.wait(120) and job.error is None
    result = job.result
    assert isinstance(result, ChatResult)
    assert fits and result.fit is fits[0] and result.fit.dropped  # the oldest turns were left out
    assert result.text == "".join(pieces)
    assert len(result.fit.prompt_tokens) <= 1024 - 8


def test_close_stops_a_running_reply_and_frees_the_model(starter_model: Path) -> None:
    svc = InferenceService()
    svc.load(starter_model, RuntimeSettings(n_ctx=512, n_threads=2))
    started = threading.Event()
    job = svc.chat(STORY, GenerationSettings(max_tokens=400), on_text=lambda _p: started.set())
    assert started.wait(120)
    assert svc.close(timeout=10)  # the reply stopped within a token; the thread ended
    assert job.done() and job.result.stats.stop_reason.value == "user_stop"
    assert svc.loaded is None and not svc.engine.is_loaded
    late = svc.chat(STORY, GenerationSettings(max_tokens=4))
    assert late.done() and late.error is not None and late.error.kind == "cancelled"


def test_a_failing_load_progress_callback_is_reported_as_itself(starter_model: Path) -> None:
    engine = Engine()

    class Watcher(Exception):
        pass

    def progress(_value: float) -> bool:
        raise Watcher("the progress bar broke")

    with pytest.raises(Watcher, match="progress bar broke"):
        engine.load(starter_model, RuntimeSettings(n_ctx=512), progress=progress)
    assert not engine.is_loaded


def test_a_context_llama_cpp_rounds_up_fills_without_overrunning(starter_model: Path) -> None:
    """llama.cpp makes a 300-token context 512 long; replies stop at 300, where the token buffer ends."""
    engine = Engine()
    engine.load(starter_model, RuntimeSettings(n_ctx=300, n_threads=2))
    try:
        assert engine.n_ctx == 300
        tokens = engine.tokenize(
            "<|im_start|>user\nWrite a very long poem.<|im_end|>\n<|im_start|>assistant\n"
        )
        generation = engine.generate(
            tokens, GenerationSettings(max_tokens=1000, seed=5, temperature=1.0, min_p=0.0)
        )
        text = "".join(generation)
        assert generation.stats is not None and generation.stats.error is None
        if generation.stats.stop_reason.value != "eos":
            assert generation.stats.stop_reason.value == "context_full"
            assert len(tokens) + generation.stats.completion_tokens == 300
        assert text
        with pytest.raises(EngineError, match="context holds 300"):
            engine.generate(engine.tokenize("word " * 400), GenerationSettings(max_tokens=4))
    finally:
        engine.unload()
