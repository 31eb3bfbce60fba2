"""The window's inference controller: tokens reach the GUI thread by signal while its event loop
keeps turning, stop halts within a token, shutdown frees the model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QThread, QTimer
from pytestqt.qtbot import QtBot

from llamadesk.engine import GenerationStats, StopReason
from llamadesk.settings import GenerationSettings, RuntimeSettings
from llamadesk.ui.inference import InferenceController, LoadedModel

pytestmark = pytest.mark.model


@pytest.fixture
def controller(qtbot: QtBot, starter_model: Path) -> Iterator[InferenceController]:
    ctl = InferenceController()
    with qtbot.waitSignal(ctl.modelLoaded, timeout=60_000) as loaded:
        ctl.load_model(starter_model, RuntimeSettings(n_ctx=1024, n_threads=2))
    model = loaded.args[0]
    assert isinstance(model, LoadedModel)
    assert model.n_ctx == 1024 and not model.chat_format.is_fallback
    yield ctl
    ctl.shutdown()


def test_tokens_arrive_on_gui_thread_while_event_loop_turns(
    qtbot: QtBot, controller: InferenceController
) -> None:
    gui_thread = QThread.currentThread()
    token_threads: list[bool] = []
    pieces: list[str] = []
    ticks: list[bool] = []  # for each turn of the event loop: was the reply still being written?

    def tick() -> None:
        job = controller._chat_job
        ticks.append(job is not None and not job.done())
        controller.stop()  # the reply would run for hundreds of tokens; this turn of the loop ends it

    def on_token(text: str) -> None:
        token_threads.append(QThread.currentThread() is gui_thread)
        pieces.append(text)
        if len(pieces) == 1:
            QTimer.singleShot(0, tick)

    controller.tokenReceived.connect(on_token)
    with qtbot.waitSignal(controller.generationFinished, timeout=60_000) as finished:
        controller.generate(
            [{"role": "user", "content": "Write a very long story about llamas."}],
            GenerationSettings(max_tokens=400, seed=2),
        )
        assert controller.busy
    stats = finished.args[0]
    assert isinstance(stats, GenerationStats)
    assert pieces and all(token_threads)
    # The event loop turned between two tokens, while the reply was being written: the GUI never
    # waited for the whole reply. (Had it frozen, the timer would have run after the last token.)
    assert ticks == [True]
    assert stats.stop_reason is StopReason.USER and stats.completion_tokens < 400
    assert not controller.busy


def test_stop_halts_within_a_token(qtbot: QtBot, controller: InferenceController) -> None:
    llm = controller.service.engine._require()
    evaluated_at_stop: list[int] = []

    def stop_now(_text: str) -> None:  # on the inference thread, between two tokens
        if not evaluated_at_stop:
            evaluated_at_stop.append(llm.n_tokens)
            controller.stop()

    hold = controller.tokenReceived.connect(stop_now, Qt.ConnectionType.DirectConnection)
    with qtbot.waitSignal(controller.generationFinished, timeout=60_000) as finished:
        controller.generate(
            [{"role": "user", "content": "Write a very long story about the sea."}],
            GenerationSettings(max_tokens=300, seed=9),
        )
    controller.tokenReceived.disconnect(hold)
    stats = finished.args[0]
    assert stats.stop_reason is StopReason.USER
    # Counted in tokens, not in time: at most one more token was evaluated after Stop.
    assert evaluated_at_stop and llm.n_tokens - evaluated_at_stop[0] <= 1
    assert 0 < stats.completion_tokens < 300


def test_context_prepared_reports_dropped_messages(qtbot: QtBot, controller: InferenceController) -> None:
    long = "llama " * 200
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(6):
        messages += [{"role": "user", "content": f"{i} {long}"}, {"role": "assistant", "content": long}]
    messages.append({"role": "user", "content": "Hi"})
    with qtbot.waitSignal(controller.contextPrepared, timeout=60_000) as prepared:
        controller.generate(messages, GenerationSettings(max_tokens=8))
    fit = prepared.args[0]
    assert fit.dropped and 0 not in fit.dropped and len(messages) - 1 not in fit.dropped
    qtbot.waitUntil(lambda: not controller.busy, timeout=60_000)


def test_bad_model_reports_failure_and_worker_survives(
    qtbot: QtBot, tmp_path: Path, controller: InferenceController
) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all" * 10)
    with qtbot.waitSignal(controller.modelLoadFailed, timeout=30_000) as failed:
        controller.load_model(bad, RuntimeSettings())
    assert "not a GGUF model file" in failed.args[0]
    with qtbot.waitSignal(controller.generationFailed, timeout=30_000) as gen_failed:
        controller.generate([{"role": "user", "content": "hi"}], GenerationSettings())
    assert "No model is loaded" in gen_failed.args[0]


def test_shutdown_mid_generation_is_clean(qtbot: QtBot, starter_model: Path) -> None:
    ctl = InferenceController()
    with qtbot.waitSignal(ctl.modelLoaded, timeout=60_000):
        ctl.load_model(starter_model, RuntimeSettings(n_ctx=512))
    with qtbot.waitSignal(ctl.tokenReceived, timeout=60_000):
        ctl.generate(
            [{"role": "user", "content": "Tell me a long story."}], GenerationSettings(max_tokens=400)
        )
    service = ctl.service
    ctl.shutdown(timeout_s=10)
    assert not service._thread.is_alive()  # the inference thread ended
    assert not service.engine.is_loaded and ctl.loaded is None  # and freed the model
    with qtbot.assertNotEmitted(ctl.generationFailed), qtbot.assertNotEmitted(ctl.tokenReceived):
        ctl.generate([{"role": "user", "content": "Still there?"}], GenerationSettings(max_tokens=4))
        qtbot.waitUntil(lambda: not ctl.busy, timeout=5000)  # refused quietly: the window is closing


def test_message_too_long_for_the_context_is_refused_before_generating(
    qtbot: QtBot, controller: InferenceController
) -> None:
    messages = [{"role": "user", "content": "llama " * 2000}]
    with (
        qtbot.assertNotEmitted(controller.generationFailed),
        qtbot.assertNotEmitted(controller.tokenReceived),
        qtbot.waitSignal(controller.promptTooLong, timeout=60_000) as refused,
    ):
        controller.generate(messages, GenerationSettings(max_tokens=100))
    assert not controller.busy
    message = refused.args[0]
    assert "only 924 fit in the context (context length 1024 minus 100 kept for the reply)" in message
    # The model is still there for the next, shorter message.
    with qtbot.waitSignal(controller.generationFinished, timeout=60_000):
        controller.generate([{"role": "user", "content": "Hi"}], GenerationSettings(max_tokens=4))


def test_stop_before_the_reply_began_finishes_it_as_stopped(qtbot: QtBot, starter_model: Path) -> None:
    ctl = InferenceController()
    # Hold the service thread in a load (at its first progress report) so the reply waits in the queue.
    entered, release = threading.Event(), threading.Event()

    def hold(_value: float) -> None:
        entered.set()
        release.wait(30)

    held = ctl.loadProgress.connect(hold, Qt.ConnectionType.DirectConnection)
    ctl.load_model(starter_model, RuntimeSettings(n_ctx=512))
    assert entered.wait(30)
    ctl.loadProgress.disconnect(held)
    try:
        with (
            qtbot.assertNotEmitted(ctl.generationFailed),
            qtbot.assertNotEmitted(ctl.tokenReceived),
            qtbot.waitSignal(ctl.generationFinished, timeout=60_000) as finished,
        ):
            ctl.generate([{"role": "user", "content": "Hi"}], GenerationSettings(max_tokens=50))
            ctl.stop()  # before the service began the reply
            release.set()
        stats = finished.args[0]
        assert isinstance(stats, GenerationStats)
        assert stats.stop_reason is StopReason.USER
        assert stats.prompt_tokens == stats.completion_tokens == 0
        assert not ctl.generating
        qtbot.waitUntil(lambda: not ctl.busy, timeout=60_000)
        # The window's next reply is not affected.
        with qtbot.waitSignal(ctl.generationFinished, timeout=60_000) as next_reply:
            ctl.generate([{"role": "user", "content": "Hi"}], GenerationSettings(max_tokens=2))
        assert next_reply.args[0].stop_reason is not StopReason.USER
    finally:
        release.set()
        ctl.shutdown()
