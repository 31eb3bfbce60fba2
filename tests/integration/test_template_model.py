"""The starter model's own chat template, rendered and tokenized by the real llama.cpp tokenizer.

The rendered prompt is tokenized with ``special=True`` and ``add_bos=False``: BOS is whatever the
template writes. SmolLM2's template writes no ``{{ bos_token }}``, but this model's BOS token *is*
``<|im_start|>`` (id 1) and its GGUF says ``add_bos_token = false``, so a correct prompt starts with
exactly one BOS: the ``<|im_start|>`` of the first turn. Adding another BOS would give two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llamadesk.chat import ChatFormat, chat_format_for, fit_context
from llamadesk.engine.runtime import llama_cpp

pytestmark = pytest.mark.model

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
]


@pytest.fixture(scope="module")
def llm(starter_model: Path) -> Iterator[Any]:
    """The starter model's vocabulary (no weights needed to tokenize), via LlamaDesk's llama_cpp loader."""
    model = llama_cpp().Llama(model_path=str(starter_model), n_ctx=512, vocab_only=True, verbose=False)
    yield model
    model.close()


@pytest.fixture(scope="module")
def chat(llm: Any) -> ChatFormat:
    bos = llm.detokenize([llm.token_bos()], special=True).decode()
    eos = llm.detokenize([llm.token_eos()], special=True).decode()
    return chat_format_for(llm.metadata.get("tokenizer.chat_template"), bos, eos)


def tokenize(llm: Any, text: str) -> list[int]:
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def test_model_template_is_the_smollm2_fixture(llm: Any, chat: ChatFormat) -> None:
    assert not chat.is_fallback
    assert chat.template == (TEMPLATES / "smollm2.jinja").read_text(encoding="utf-8")
    assert (chat.bos_token, chat.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert chat.stop_strings == ["<|im_end|>"]


def test_prompt_starts_with_exactly_one_bos(llm: Any, chat: ChatFormat) -> None:
    bos = llm.token_bos()
    assert llm.metadata.get("tokenizer.ggml.add_bos_token") == "false"
    assert "bos_token" not in chat.template  # the template does not write BOS itself ...
    tokens = tokenize(llm, chat.render(CONVERSATION))
    assert tokens[0] == bos  # ... its first turn's <|im_start|> is this model's BOS
    assert tokens[1] != bos  # and there is never a second one
    # Writing the BOS text in front as well (what a naive "add BOS" does) would double it.
    assert tokenize(llm, chat.bos_token + chat.render(CONVERSATION))[:2] == [bos, bos]


def test_special_tokens_are_single_tokens(llm: Any, chat: ChatFormat) -> None:
    tokens = tokenize(llm, chat.render(CONVERSATION))
    im_start, im_end = llm.token_bos(), llm.token_eos()
    assert tokens.count(im_start) == len(CONVERSATION) + 1  # every turn plus the generation prompt
    assert tokens.count(im_end) == len(CONVERSATION)
    assert llm.detokenize(tokens, special=True).decode() == chat.render(CONVERSATION)


def test_context_fitting_with_the_real_tokenizer(llm: Any, chat: ChatFormat) -> None:
    messages = [CONVERSATION[0]]
    for i in range(30):
        messages.append({"role": "user", "content": f"Question {i}: tell me something about the number {i}."})
        messages.append(
            {"role": "assistant", "content": f"The number {i} is {'even' if i % 2 == 0 else 'odd'}."}
        )
    messages.append({"role": "user", "content": "Thanks!"})
    full = tokenize(llm, chat.render(messages))
    fit = fit_context(chat, messages, lambda text: tokenize(llm, text), budget=len(full) // 3)
    assert fit.kept[0] == 0 and fit.kept[-1] == len(messages) - 1
    assert fit.dropped == list(range(1, 1 + len(fit.dropped)))
    assert fit.prompt_tokens == tokenize(llm, fit.prompt)
    assert len(fit.prompt_tokens) <= len(full) // 3
    assert fit.prompt.startswith(
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"
    )
