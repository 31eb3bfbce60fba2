"""Quantization, kind and split part recognised from the file names people publish on the Hub."""

from __future__ import annotations

import pytest

from llamadesk.hub.quant import (
    BITS_PER_WEIGHT,
    bits_per_weight,
    display_name,
    file_kind,
    parse_quantization,
    split_part,
)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("llama-2-7b-chat.Q5_K_S.gguf", "Q5_K_S"),
        ("mistral-7b-instruct-v0.2.Q8_0.gguf", "Q8_0"),
        ("qwen2.5-0.5b-instruct-q4_0.gguf", "Q4_0"),
        ("Phi-3-mini-4k-instruct-IQ2_XXS.gguf", "IQ2_XXS"),
        ("Phi-3-mini-4k-instruct-IQ2_XS.gguf", "IQ2_XS"),
        ("model-IQ4_NL.gguf", "IQ4_NL"),
        ("model-IQ4_XS.gguf", "IQ4_XS"),
        ("model-IQ1_S.gguf", "IQ1_S"),
        ("model-IQ3_M.gguf", "IQ3_M"),
        ("gemma-2-2b-it-F16.gguf", "F16"),
        ("gemma-2-2b-it-bf16.gguf", "BF16"),
        ("tiny-f32.gguf", "F32"),
        ("model.Q2_K.gguf", "Q2_K"),
        ("model.Q3_K_L.gguf", "Q3_K_L"),
        ("model-Q6_K.gguf", "Q6_K"),
        ("Q4_K_M/Meta-Llama-3.1-70B-Instruct-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("model-Q5_1.gguf", "Q5_1"),
        ("just-a-model.gguf", None),
        ("F16-finetune-Q4_0.gguf", "Q4_0"),  # the last quantization named wins
        # publishers' mixes keep their published names
        ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
        ("UD-Q2_K_XL/Qwen3-235B-A22B-UD-Q2_K_XL-00001-of-00002.gguf", "UD-Q2_K_XL"),
        ("Qwen3-8B-UD-Q8_K_XL.gguf", "UD-Q8_K_XL"),
        ("DeepSeek-R1-UD-IQ1_S.gguf", "UD-IQ1_S"),
        ("gemma-3-12b-it-Q4_K_L.gguf", "Q4_K_L"),
        ("gemma-3-12b-it-Q6_K_L.gguf", "Q6_K_L"),
        ("model-Q8_K.gguf", None),  # not a file type
    ],
)
def test_quantization_from_file_name(filename: str, expected: str | None) -> None:
    assert parse_quantization(filename) == expected


def test_bits_per_weight_follow_llama_cpp_ordering() -> None:
    assert bits_per_weight("Q4_K_M") == pytest.approx(4.83)
    assert bits_per_weight("q8_0") == pytest.approx(8.5)
    assert bits_per_weight(None) is None and bits_per_weight("Q9_X") is None
    # a mix counts as the type it is built on; one with no such type is unknown
    assert bits_per_weight("UD-Q4_K_XL") == bits_per_weight("Q4_K_L") == pytest.approx(4.83)
    assert bits_per_weight("Q3_K_L") == pytest.approx(4.27) and bits_per_weight("UD-Q8_K_XL") is None
    order = [
        "IQ1_S",
        "IQ2_XXS",
        "IQ2_XS",
        "Q2_K",
        "Q3_K_M",
        "Q4_0",
        "Q4_K_M",
        "Q5_K_M",
        "Q6_K",
        "Q8_0",
        "F16",
    ]
    values = [BITS_PER_WEIGHT[name] for name in order]
    assert values == sorted(values)


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("mmproj-model-f16.gguf", "mmproj"),
        ("llava-v1.6-mistral-7b.mmproj-Q8_0.gguf", "mmproj"),
        ("Qwen2-VL-7B-Instruct-mmproj-F16.gguf", "mmproj"),
        ("Llama-3.2-1B-Instruct.imatrix.gguf", "imatrix"),
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "model"),
    ],
)
def test_file_kind(filename: str, kind: str) -> None:
    assert file_kind(filename) == kind


def test_split_parts_and_display_names() -> None:
    part = split_part("sub/Big-Model-Q4_K_M-00002-of-00003.gguf")
    assert part is not None and (part.stem, part.index, part.count) == ("Big-Model-Q4_K_M", 2, 3)
    assert split_part("model-Q4_K_M.gguf") is None
    assert display_name("sub/Big-Model-Q4_K_M-00002-of-00003.gguf") == "Big-Model-Q4_K_M"
    assert display_name("model-Q4_K_M.gguf") == "model-Q4_K_M"


def test_quantizations_are_explained_in_plain_words() -> None:
    from llamadesk.hub.quant import describe_quantization

    q4 = describe_quantization("Q4_K_M")
    assert q4.startswith("Q4_K_M: about 4.83 bits per weight.") and "quarter of the 16-bit size" in q4
    assert "half the memory" in describe_quantization("Q8_0")
    assert "Not quantized" in describe_quantization("BF16")
    assert "large loss in quality" in describe_quantization("IQ2_XXS")
    assert "importance matrix" in describe_quantization("IQ4_XS")
    mix = describe_quantization("UD-Q4_K_XL")
    assert "Unsloth Dynamic" in mix and "quarter of the 16-bit size" in mix
    assert "publisher's mix of Q4_K" in describe_quantization("Q4_K_L")
    assert "Q3_K_L" in describe_quantization("Q3_K_L") and "mix" not in describe_quantization("Q3_K_L")
    assert describe_quantization(None) == "" and describe_quantization("Q9_X") == "Q9_X."
