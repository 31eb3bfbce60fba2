"""Engine overhead and prefix reuse, measured side by side in one run.

1. Decode speed through Engine + inference QThread + queued signals to the GUI thread,
   divided by a raw ``llama_cpp.Llama.create_completion(stream=True)`` loop: same model,
   prompt and seed, 256 tokens, alternating runs. Target >= 0.97.
2. Time to first token at turn 8 of a chat with ~1,500 tokens of history divided by turn 1
   with the same new-message length. Target <= 1.3 (llama.cpp reuses the cached prefix).
3. Longest GUI-thread stall while the worker generates (5 ms heartbeat timer).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))

from PySide6.QtCore import QCoreApplication, QElapsedTimer, QEventLoop, QTimer

from llamadesk.engine import Engine
from llamadesk.engine import runtime as llama_runtime
from llamadesk.paths import starter_model_path
from llamadesk.settings import GenerationSettings, RuntimeSettings
from llamadesk.ui.inference import InferenceController

TOKENS = 256
ROUNDS = 3
PROMPT = "Write a long, detailed story about a llama who learns to program computers."


def raw_decode_tps(llm: object, prompt: str) -> float:
    first: float | None = None
    count = 0
    for _chunk in llm.create_completion(  # type: ignore[attr-defined]
        prompt,
        max_tokens=TOKENS,
        stream=True,
        seed=42,
        temperature=0.8,
        top_p=0.95,
        top_k=40,
        min_p=0.05,
        repeat_penalty=1.1,
    ):
        count += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None
    return (count - 1) / (end - first)


def worker_decode_tps(
    controller: InferenceController,
    app: QCoreApplication,
    messages: list[dict[str, str]],
    settings: GenerationSettings,
    *,
    heartbeat_ms: int = 0,
) -> tuple[float, int, float]:
    arrivals: list[float] = []
    stalls: list[float] = []
    done: list[object] = []
    heartbeat = QTimer()
    heartbeat.setInterval(max(heartbeat_ms, 1))
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    def beat() -> None:
        now = clock.nsecsElapsed()
        stalls.append((now - last[0]) / 1e6)
        last[0] = now

    heartbeat.timeout.connect(beat)
    on_token = lambda _t: arrivals.append(time.perf_counter())  # noqa: E731
    on_done = lambda stats: done.append(stats)  # noqa: E731
    controller.tokenReceived.connect(on_token)
    controller.generationFinished.connect(on_done)
    controller.generationFailed.connect(on_done)
    if heartbeat_ms:
        heartbeat.start()
    controller.generate(messages, settings)
    # Wait the way the app does, in an event loop (a processEvents() polling loop holds the GIL
    # while it waits, which starves the inference thread's Python between tokens).
    loop = QEventLoop()
    controller.generationFinished.connect(loop.quit)
    controller.generationFailed.connect(loop.quit)
    if not done:
        loop.exec()
    controller.generationFinished.disconnect(loop.quit)
    controller.generationFailed.disconnect(loop.quit)
    heartbeat.stop()
    controller.tokenReceived.disconnect(on_token)
    controller.generationFinished.disconnect(on_done)
    controller.generationFailed.disconnect(on_done)
    stats = done[0]
    tokens = getattr(stats, "completion_tokens", 0)
    # Pieces are coalesced per frame: count tokens from the stats, time them on the GUI thread.
    tps = (tokens - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 and tokens > 1 else 0.0
    del app
    return tps, tokens, max(stalls) if stalls else 0.0


def main() -> int:
    model = starter_model_path()
    if model is None:
        print("the starter model is missing: run `make test` first", file=sys.stderr)
        return 2
    app = QCoreApplication.instance() or QCoreApplication(sys.argv)
    threads = max(1, (os.cpu_count() or 2))
    runtime = RuntimeSettings(n_ctx=2048, n_threads=threads)

    # The raw loop gets its own Llama with the same parameters, side by side in one process.
    module = llama_runtime.llama_cpp()
    raw = module.Llama(
        model_path=str(model), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    chat_prompt = f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"

    controller = InferenceController()
    loaded: list[object] = []
    controller.modelLoaded.connect(loaded.append)
    controller.modelLoadFailed.connect(loaded.append)
    waiting = QEventLoop()
    controller.modelLoaded.connect(waiting.quit)
    controller.modelLoadFailed.connect(waiting.quit)
    controller.load_model(model, runtime)
    if not loaded:
        waiting.exec()
    settings = GenerationSettings(max_tokens=TOKENS, seed=42, temperature=0.8)
    messages = [{"role": "user", "content": PROMPT}]

    raw_tps: list[float] = []
    ours_tps: list[float] = []
    worst_stall = 0.0
    for _ in range(ROUNDS):
        raw_tps.append(raw_decode_tps(raw, chat_prompt))
        tps, _count, _ = worker_decode_tps(controller, app, messages, settings)
        ours_tps.append(tps)
    # The GUI-thread stall is measured in a separate run: the 5 ms heartbeat itself costs CPU.
    _, _, worst_stall = worker_decode_tps(controller, app, messages, settings, heartbeat_ms=5)
    raw.close()

    # Prefix reuse: turn 1 vs turn 8 with ~1,500 tokens of history, same new-message length.
    engine = Engine()
    engine.load(model, runtime)
    history: list[tuple[str, str]] = [("system", "You are a helpful assistant.")]
    new_message = "Summarise what we discussed in one short sentence please."
    gen_settings = GenerationSettings(max_tokens=1)

    def render(turns: list[tuple[str, str]]) -> str:
        return "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in turns) + "<|im_start|>assistant\n"

    def ttft(turns: list[tuple[str, str]]) -> float:
        gen = engine.generate(render(turns), gen_settings)
        "".join(gen)
        assert gen.stats is not None
        return gen.stats.ttft_s

    turn1 = []
    turn8 = []
    filler = " ".join(["The llama walked along the mountain path and looked at the valley."] * 7)
    for _ in range(ROUNDS):
        engine.llama.reset()
        turn1.append(ttft([*history, ("user", new_message)]))
        convo = list(history)
        for i in range(7):
            convo += [("user", f"Question {i}: {filler}"), ("assistant", f"Answer {i}: {filler}")]
        # The previous turn left the whole history in llama.cpp's cache, as in a real chat.
        warm = engine.generate(render(convo)[: -len("<|im_start|>assistant\n")], gen_settings)
        "".join(warm)
        prompt_tokens = len(engine.tokenize(render([*convo, ("user", new_message)])))
        turn8.append(ttft([*convo, ("user", new_message)]))
    engine.unload()
    controller.shutdown()

    raw_med = statistics.median(raw_tps)
    ours_med = statistics.median(ours_tps)
    print(
        f"decode tokens/s   raw llama_cpp: {raw_med:6.1f}   LlamaDesk worker: {ours_med:6.1f}   "
        f"ratio {ours_med / raw_med:.3f} (target >= 0.97)"
    )
    print(
        f"time to first token   turn 1: {statistics.median(turn1) * 1000:6.1f} ms   "
        f"turn 8 ({prompt_tokens} prompt tokens): {statistics.median(turn8) * 1000:6.1f} ms   "
        f"ratio {statistics.median(turn8) / statistics.median(turn1):.2f} (target <= 1.3)"
    )
    print(f"longest GUI-thread stall while generating: {worst_stall:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
