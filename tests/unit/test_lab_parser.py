"""The lab commands' arguments: defaults like llama-bench and llama-perplexity, bad values refused."""

from __future__ import annotations

import pytest

from llamadesk.cli import build_parser


def test_bench_defaults_and_options() -> None:
    args = build_parser().parse_args(["bench", "starter"])
    assert (args.handler, args.prompt_tokens, args.gen_tokens, args.repetitions) == (
        "lab:cmd_bench",
        512,
        128,
        3,
    )
    assert args.ctx is None and args.threads is None and not args.json
    args = build_parser().parse_args(
        ["bench", "m.gguf", "--ctx", "2048", "--gpu-layers", "0", "--threads", "4"]
    )
    assert (args.ctx, args.gpu_layers, args.threads) == (2048, 0, 4)


def test_perplexity_and_compare() -> None:
    args = build_parser().parse_args(["perplexity", "starter", "wiki.txt", "--ctx", "256", "--json"])
    assert (args.handler, args.file, args.ctx, args.json) == ("lab:cmd_perplexity", "wiki.txt", 256, True)
    args = build_parser().parse_args(["compare", "a", "b", "c", "Say hi", "--max-tokens", "20"])
    assert (args.handler, args.models, args.prompt, args.max_tokens) == (
        "lab:cmd_compare",
        ["a", "b", "c"],
        "Say hi",
        20,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "m", "--threads", "-1"],
        ["bench", "m", "--repetitions", "0"],
        ["perplexity", "m", "f.txt", "--ctx", "8"],
        ["perplexity", "m"],
    ],
)
def test_bad_values_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2 and capsys.readouterr().err.startswith("llamadesk: error:")
