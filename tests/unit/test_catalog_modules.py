"""The Hub catalog's modules: public names stay importable from ``hub.catalog``; search reads the type."""

from __future__ import annotations

import json
from pathlib import Path

from hub_server import Exchange, FakeHub
from llamadesk.hub import catalog, catalog_models, hub_http
from llamadesk.hub.catalog import HubCatalog

HUB_DIR = Path(catalog.__file__).parent


def test_public_names_are_still_importable_from_catalog() -> None:
    for name in ("FilePart", "ModelFile", "RepoFiles", "RepoSummary", "SearchPage", "group_model_files"):
        assert getattr(catalog, name) is getattr(catalog_models, name)
    for name in ("HUB_EXCEPTIONS", "hub_headers", "resolve_endpoint"):
        assert getattr(catalog, name) is getattr(hub_http, name)
    assert issubclass(HubCatalog, hub_http.HubHTTP)
    assert set(catalog.__all__) <= set(dir(catalog))


def test_hub_modules_stay_under_the_size_limit() -> None:
    for module in (catalog, catalog_models, hub_http):
        lines = Path(str(module.__file__)).read_text(encoding="utf-8").count("\n")
        assert lines <= 600, f"{module.__name__} has {lines} lines"


def test_search_asks_for_the_pipeline_tag_and_marks_embedding_models() -> None:
    nomic = "nomic-ai/nomic-embed-text-v1.5-GGUF"
    answer = [
        {"id": nomic, "pipeline_tag": "sentence-similarity", "tags": ["gguf"]},
        {"id": "someone/Chat-GGUF", "pipeline_tag": "text-generation", "tags": ["gguf", "conversational"]},
        {"id": "someone/Embed-GGUF", "pipeline_tag": "text-generation", "tags": ["sentence-transformers"]},
        {"id": "someone/Odd-GGUF", "pipeline_tag": ["not", "a", "string"], "tags": ["gguf"]},
    ]

    def search(exchange: Exchange) -> None:
        if exchange.path == "/api/models":
            exchange.reply(200, json.dumps(answer).encode())
        else:
            exchange.default()

    with FakeHub() as hub:
        hub.route("/api/models", search)
        page = HubCatalog(hub.url).search("embed")
        asked = [r for r in hub.requests if r.path == "/api/models"]
    assert "pipeline_tag" in asked[0].query["expand"]
    marks = {r.repo_id: (r.is_embedding, r.pipeline_tag) for r in page.results}
    assert marks == {
        "nomic-ai/nomic-embed-text-v1.5-GGUF": (True, "sentence-similarity"),
        "someone/Chat-GGUF": (False, "text-generation"),
        "someone/Embed-GGUF": (True, "text-generation"),
        "someone/Odd-GGUF": (False, None),  # a pipeline tag that is not a string is dropped
    }
