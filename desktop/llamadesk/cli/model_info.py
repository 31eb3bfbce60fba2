"""`llamadesk inspect`: a GGUF file's facts and whether it fits this machine, without loading it."""

from __future__ import annotations

import argparse
import json

from .common import shown
from .resolve import resolve_model


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..engine import detect_hardware, inspect_gguf, plan_fit

    info = inspect_gguf(resolve_model(args.path))
    hw = detect_hardware()
    plan = plan_fit(info, hw)
    if args.json:
        data = info.as_dict()
        data["fit"] = {
            "verdict": plan.verdict,
            "n_gpu_layers": plan.n_gpu_layers,
            "n_ctx": plan.n_ctx,
            "max_ctx": plan.max_ctx,
            "memory_bytes": plan.estimate.total,
            "summary": plan.summary,
        }
        data["hardware"] = {
            "backend": hw.backend,
            "gpu_offload": hw.gpu_offload,
            "total_ram": hw.total_ram,
            "available_ram": hw.available_ram,
            "gpus": [g.__dict__ for g in hw.gpus],
        }
        print(json.dumps(data, indent=2))
        return 0
    params = f"{info.parameter_count / 1e9:.2f} B" if info.parameter_count else "unknown"
    bpw = f"{info.bits_per_weight:.2f}" if info.bits_per_weight else "?"
    rows = [
        ("File", str(info.path)),
        ("Size", f"{info.file_size / 1024**2:,.1f} MiB"),
        ("Name", info.name or "-"),
        ("Architecture", info.architecture),
        ("Parameters", params),
        ("Quantization", f"{info.file_type} ({bpw} bits per weight)"),
        ("Trained context", f"{info.context_length:,}" if info.context_length else "unknown"),
        ("Layers", str(info.block_count or "?")),
        ("Embedding size", str(info.embedding_length or "?")),
        ("Attention heads", f"{info.head_count or '?'} (KV {info.head_count_kv or '?'})"),
        ("Chat template", "yes" if info.chat_template else "no (ChatML fallback)"),
        ("This machine", hw.describe()),
        ("Fit", f"{plan.label}: {plan.summary}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {shown(value)}")
    return 0
