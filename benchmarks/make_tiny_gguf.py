"""Write a small, real llama-architecture GGUF with random weights for offload checks.

The tokenizer metadata is copied from the starter model so llama.cpp accepts the file;
the weights are random, so the text is nonsense but the compute is that of a real model.
Control tokens get zero embedding rows, which keeps greedy decoding away from end-of-turn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType, quants

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))

from llamadesk.paths import starter_model_path

CONTROL_TOKEN = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL


def copy_tokenizer(reader: GGUFReader, writer: GGUFWriter) -> tuple[int, list[int]]:
    """Copy every ``tokenizer.*`` key; returns the vocabulary size and the control token ids."""
    vocab = 0
    control: list[int] = []
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        value = field.contents()
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, vtype, sub_type=sub_type)
        if key == "tokenizer.ggml.tokens":
            vocab = len(value)
        elif key == "tokenizer.ggml.token_type":
            control = [i for i, kind in enumerate(value) if kind == CONTROL_TOKEN]
    if not vocab:
        raise SystemExit("the source model has no tokenizer.ggml.tokens")
    return vocab, control


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path, help="where to write the .gguf")
    parser.add_argument("--source", type=Path, default=None, help="model to take the tokenizer from")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--embd", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--ff", type=int, default=512)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument(
        "--embd-type",
        choices=("q8_0", "f16"),
        default="q8_0",
        help="token embedding type; q8_0 halves the file (the vocabulary dominates it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    source = args.source or starter_model_path()
    if source is None or not Path(source).is_file():
        raise SystemExit("no source model for the tokenizer; pass --source")
    reader = GGUFReader(source)
    rng = np.random.default_rng(args.seed)
    head_dim = args.embd // args.heads
    kv_dim = head_dim * args.kv_heads

    writer = GGUFWriter(args.output, "llama")
    writer.add_name("Tiny random llama (offload check)")
    writer.add_block_count(args.layers)
    writer.add_context_length(args.ctx)
    writer.add_embedding_length(args.embd)
    writer.add_feed_forward_length(args.ff)
    writer.add_head_count(args.heads)
    writer.add_head_count_kv(args.kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    vocab, control = copy_tokenizer(reader, writer)
    writer.add_vocab_size(vocab)

    def weight(rows: int, cols: int) -> np.ndarray:
        # numpy shape (rows, cols) is GGUF shape [cols, rows]: cols is the input dimension.
        return (rng.standard_normal((rows, cols), dtype=np.float32) * cols**-0.5).astype(np.float16)

    embd = rng.standard_normal((vocab, args.embd), dtype=np.float32) * 0.5
    embd[control] = 0.0  # tied output: a zero row keeps end-of-turn tokens from winning greedy decoding
    if args.embd_type == "q8_0":
        writer.add_tensor(
            "token_embd.weight",
            quants.quantize(embd, GGMLQuantizationType.Q8_0),
            raw_dtype=GGMLQuantizationType.Q8_0,
        )
    else:
        writer.add_tensor("token_embd.weight", embd.astype(np.float16))
    writer.add_tensor("output_norm.weight", np.ones(args.embd, dtype=np.float32))
    for i in range(args.layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(args.embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(args.embd, args.embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(kv_dim, args.embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(kv_dim, args.embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(args.embd, args.embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(args.embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(args.ff, args.embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(args.ff, args.embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(args.embd, args.ff))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 1024**2:.1f} MiB, {vocab} tokens, {args.layers} layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
