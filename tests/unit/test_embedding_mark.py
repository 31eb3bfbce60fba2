"""Embedding models are recognised from a GGUF header and from the Hub's tags, and kept out of chat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gguf import GGUFWriter, PoolingType
from huggingface_hub.hf_api import ModelInfo

from hub_server import make_gguf
from llamadesk.engine.gguf_info import _from_facts, _to_facts, inspect_gguf
from llamadesk.hub import ModelLibrary, RepoSummary
from llamadesk.hub.catalog import is_embedding_repo
from llamadesk.paths import Paths


def write_gguf(
    path: Path, arch: str, *, pooling: PoolingType | None = None, chat_template: str | None = None
) -> Path:
    """A tiny valid GGUF with the given architecture, pooling type and chat template."""
    import numpy as np

    writer = GGUFWriter(str(path), arch)
    writer.add_name(f"Tiny {arch}")
    writer.add_file_type(1)
    writer.add_context_length(512)
    writer.add_block_count(1)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    if pooling is not None:
        writer.add_pooling_type(pooling)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", np.zeros(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_bert_with_pooling_type_is_an_embedding_model(tmp_path: Path) -> None:
    info = inspect_gguf(write_gguf(tmp_path / "embed.gguf", "bert", pooling=PoolingType.MEAN))
    assert info.architecture == "bert" and info.metadata.get("bert.pooling_type") == int(PoolingType.MEAN)
    assert info.is_embedding and info.as_dict()["is_embedding"] is True


@pytest.mark.parametrize("arch", ["nomic-bert", "jina-bert-v2", "new", "modern-bert"])
def test_bert_family_without_pooling_key_is_an_embedding_model(tmp_path: Path, arch: str) -> None:
    assert inspect_gguf(make_gguf(tmp_path / f"{arch}.gguf", arch=arch, data_bytes=1024)).is_embedding


def test_a_decoder_with_a_pooling_type_is_an_embedding_model(tmp_path: Path) -> None:
    # Decoder-based embedders (Qwen3-Embedding and the like) are llama-like but carry a pooling type.
    path = write_gguf(tmp_path / "qwen-embed.gguf", "qwen3", pooling=PoolingType.LAST)
    assert inspect_gguf(path).is_embedding


def test_chat_models_are_not_embedding_models(tmp_path: Path, starter_model: Path) -> None:
    starter = inspect_gguf(starter_model)
    assert starter.architecture == "llama" and starter.has_chat_template
    assert not starter.is_embedding and starter.as_dict()["is_embedding"] is False
    assert not inspect_gguf(make_gguf(tmp_path / "llama.gguf", data_bytes=1024)).is_embedding
    # A pooling type of "none" next to a chat template is a chat model converted with the key set.
    chat = write_gguf(tmp_path / "chat.gguf", "llama", pooling=PoolingType.NONE, chat_template="{{ x }}")
    assert not inspect_gguf(chat).is_embedding


def test_the_mark_survives_the_header_cache(tmp_path: Path) -> None:
    # The header cache keeps the facts as JSON; the mark is worked out from them, not read again.
    info = inspect_gguf(write_gguf(tmp_path / "embed.gguf", "qwen3", pooling=PoolingType.CLS))
    facts = json.loads(json.dumps({"info": _to_facts(info)}))
    again = _from_facts(facts, info.path)
    assert not isinstance(again, Exception) and again is not None
    assert again.is_embedding and again.metadata["qwen3.pooling_type"] == int(PoolingType.CLS)


def test_library_entries_say_which_models_are_for_chat(paths: Paths, tmp_path: Path) -> None:
    library = ModelLibrary(paths, hf_cache_dir=tmp_path / "no-hf-cache")
    own = write_gguf(tmp_path / "nomic-embed.gguf", "nomic-bert", pooling=PoolingType.MEAN)
    embedder = library.import_model(own)
    assert embedder.loadable and embedder.is_embedding and not embedder.is_chat_model
    assert embedder.as_dict()["is_embedding"] is True
    starter = next(m for m in library.list() if m.source == "starter")
    assert starter.is_chat_model and not starter.is_embedding
    listed = {m.key: m for m in library.list()}
    assert listed[embedder.key].is_embedding


@pytest.mark.parametrize(
    ("pipeline_tag", "tags", "expected"),
    [
        ("feature-extraction", ["gguf"], True),
        ("sentence-similarity", ["gguf"], True),
        ("text-generation", ["gguf", "sentence-transformers"], True),
        (None, ["gguf", "Embeddings"], True),
        ("text-generation", ["gguf", "conversational"], False),
        (None, [], False),
    ],
)
def test_hub_repos_are_marked_from_pipeline_tag_and_tags(
    pipeline_tag: str | None, tags: list[str], expected: bool
) -> None:
    info = ModelInfo(id="someone/Model-GGUF", pipeline_tag=pipeline_tag, tags=tags)
    summary = RepoSummary.from_info(info)
    assert summary.pipeline_tag == pipeline_tag
    assert summary.is_embedding is expected is is_embedding_repo(pipeline_tag, tags)
