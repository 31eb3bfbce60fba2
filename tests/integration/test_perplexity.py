"""Perplexity on the real starter model: the fast method against an independent slow one, determinism,
cancelling, and clear messages for bad input."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llamadesk.engine import Engine, EngineError
from llamadesk.engine.lab_results import LabProgress
from llamadesk.engine.perplexity import measure_perplexity, perplexity, read_text_file, text_tokens
from llamadesk.settings import RuntimeSettings

pytestmark = pytest.mark.model

N_CTX = 256

TEXT = """\
The harbour town woke slowly on winter mornings. Before the sun cleared the hills, the fishing boats
were already out beyond the breakwater, and the only sounds in the narrow streets were the gulls and
the baker's cart rattling over the cobbles. By eight the market square filled with stalls: apples from
the valley farms, wool and cheese from the high pastures, and the first of the catch laid out on ice.
Children ran between the stalls on their way to school, and old men sat on the steps of the church
arguing about the weather, the price of diesel and whether the new mayor would keep his promises.

The town had been built on trade. Three hundred years ago its merchants sent ships to every port on
the coast, and the warehouses along the quay still carried the names of the families who had owned
them. Most were empty now, or had become restaurants and galleries for the summer visitors, but in the
cold months the town belonged to the people who lived there all year. They knew each other's children
and each other's troubles, and when a storm kept the boats in harbour they gathered in the inn by the
lighthouse to drink, play cards and tell the same stories they had told a hundred times before.

Anna kept the bookshop at the corner of the square. She had inherited it from her uncle, along with
several thousand books, a cat of uncertain age and a ledger in which nobody had written for a decade.
Business was slow but steady: schoolbooks in September, cookbooks and novels at Christmas, maps and
guides for the walkers who came in spring. She liked the quiet hours best, when the shop smelled of
paper and coffee and she could read by the window while the rain ran down the glass. Sometimes a
stranger came in looking for something particular, a book about ships or an old atlas, and she would
search the shelves with them until they found it or agreed that it had never existed at all.

One evening in February a young man arrived on the last bus with a suitcase and a letter. He asked for
Anna by name, and when she came to the door he handed her the letter without a word. It was from her
uncle, written in his careful hand, and dated the week before he died. It said that the young man was
the son of an old friend, that he would need somewhere to stay and some work to do, and that Anna should
trust him as she would have trusted her uncle himself. She read it twice, looked at the young man
standing in the rain, and stepped aside to let him in.
"""


@pytest.fixture(scope="module")
def engine(starter_model: Path) -> Iterator[Engine]:
    eng = Engine()
    eng.load(
        starter_model,
        RuntimeSettings(n_ctx=N_CTX, n_batch=N_CTX, n_threads=2, n_gpu_layers=0, flash_attn="off"),
    )
    yield eng
    eng.unload()


def slow_perplexity(model: Path, text: str, n_ctx: int) -> float:
    """Full logits for every position from llama-cpp-python (logits_all), log-softmax in NumPy."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(model),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=2,
        n_gpu_layers=0,
        flash_attn=False,  # the same exact attention as the engine above (flash attention rounds differently)
        logits_all=True,
        verbose=False,
    )
    try:
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llm._model.vocab))
        bos = int(llama_cpp.llama_vocab_bos(llm._model.vocab))
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)
        losses: list[float] = []
        for start in range(0, len(tokens) - n_ctx + 1, n_ctx):
            window = tokens[start : start + n_ctx]
            if add_bos:
                window[0] = bos
            llm.reset()
            llm.eval(window)
            logits = np.array(llm.scores[:n_ctx], dtype=np.float64)
            for i in range(n_ctx // 2, n_ctx - 1):
                row = logits[i]
                log_z = np.log(np.sum(np.exp(row - row.max()))) + row.max()
                losses.append(log_z - row[window[i + 1]])
        return math.exp(sum(losses) / len(losses))
    finally:
        llm.close()


def test_fast_method_agrees_with_the_slow_one(engine: Engine, starter_model: Path) -> None:
    tokens = text_tokens(engine, TEXT)
    assert len(tokens) >= 2 * N_CTX  # two windows at least
    fast = perplexity(engine, tokens, N_CTX)
    slow = slow_perplexity(starter_model, TEXT, N_CTX)
    assert fast.windows == len(tokens) // N_CTX
    assert fast.tokens_scored == fast.windows * (N_CTX - 1 - N_CTX // 2)
    assert abs(fast.perplexity - slow) / slow < 0.001
    assert 1.0 < fast.perplexity < 1000.0 and 0.0 < fast.stderr < fast.perplexity


def test_deterministic_run_to_run(engine: Engine) -> None:
    tokens = text_tokens(engine, TEXT)
    first = perplexity(engine, tokens, N_CTX)
    second = perplexity(engine, tokens, N_CTX)
    assert first.perplexity == second.perplexity and first.stderr == second.stderr


def test_progress_and_cancel(engine: Engine) -> None:
    tokens = text_tokens(engine, TEXT)
    stop = threading.Event()
    seen: list[LabProgress] = []

    def on_progress(p: LabProgress) -> None:
        seen.append(p)
        stop.set()  # cancel after the first window

    with pytest.raises(EngineError, match="cancelled"):
        perplexity(engine, tokens, N_CTX, progress=on_progress, stop_event=stop)
    assert len(seen) == 1 and 0 < seen[0].fraction < 1 and seen[0].seconds_left is not None
    # The engine still works after a cancelled run.
    assert perplexity(engine, tokens, N_CTX).windows == len(tokens) // N_CTX


def test_text_shorter_than_one_window(engine: Engine) -> None:
    with pytest.raises(EngineError, match="shorter than one window"):
        perplexity(engine, text_tokens(engine, "Just a few words."), N_CTX)


def test_context_larger_than_the_model(starter_model: Path) -> None:
    with pytest.raises(EngineError, match=r"larger than .* was trained for"):
        measure_perplexity(starter_model, TEXT, 1_000_000)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\t\n", "is empty"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "binary file"),
        (b"caf\xe9 au lait", "not UTF-8"),
    ],
)
def test_bad_text_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "text.txt"
    path.write_bytes(content)
    with pytest.raises(EngineError, match=message):
        read_text_file(path)


def test_missing_text_file(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        read_text_file(tmp_path / "nope.txt")
