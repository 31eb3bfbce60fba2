"""The API server's door: address, Host and Origin checks, the API key, CORS; history and loading rules."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from server_helpers import error_of, raw, running_server

from llamadesk.chat.store import ConversationStore
from llamadesk.engine.service import InferenceService, Job
from llamadesk.hub.library import ModelLibrary
from llamadesk.paths import Paths
from llamadesk.server.config import ServerConfig, ServerError
from llamadesk.server.history import History
from llamadesk.server.runner import LocalServer
from llamadesk.settings import GenerationSettings, RuntimeSettings


@pytest.fixture
def idle_service() -> Iterator[InferenceService]:
    """A service with no model: enough for everything that is refused before a model runs."""
    service = InferenceService()
    yield service
    assert service.close(timeout=10)


def test_listening_beyond_this_computer_requires_an_api_key(idle_service: InferenceService) -> None:
    with pytest.raises(ServerError, match="requires an API key"):
        LocalServer(idle_service, ServerConfig(host="0.0.0.0", port=0))
    with pytest.raises(ServerError, match="not an origin"):
        LocalServer(idle_service, ServerConfig(port=0, allowed_origins=["localhost:3000"]))
    LocalServer(idle_service, ServerConfig(host="0.0.0.0", port=0, api_key="k")).stop()


def test_a_port_in_use_is_a_clear_error(idle_service: InferenceService) -> None:
    with running_server(idle_service) as first:
        second = LocalServer(idle_service, ServerConfig(port=first.port))
        with pytest.raises(ServerError, match="already in use"):
            second.start()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8642", "127.0.0.1.nip.io", ""])
def test_a_foreign_host_header_is_refused(idle_service: InferenceService, host: str) -> None:
    with running_server(idle_service) as server:
        status, _, body = raw(server, "GET", "/v1/models", headers={"Host": host})
        assert status == 403 and error_of(body)["code"] == "host_not_allowed"
        for own in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost"):
            assert raw(server, "GET", "/v1/models", headers={"Host": own})[0] == 200


def test_web_pages_are_refused_unless_their_origin_is_allowed(idle_service: InferenceService) -> None:
    page = {"Origin": "http://evil.example"}
    with running_server(idle_service) as server:
        status, headers, body = raw(server, "POST", "/v1/chat/completions", b"{}", headers=page)
        assert status == 403 and error_of(body)["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in headers
        status, headers, _ = raw(server, "OPTIONS", "/v1/chat/completions", headers=page)
        assert status == 403 and "access-control-allow-origin" not in headers  # CORS is off
    app = {"Origin": "http://localhost:3000"}
    with running_server(idle_service, allowed_origins=["http://localhost:3000"]) as server:
        status, headers, _ = raw(
            server,
            "OPTIONS",
            "/v1/chat/completions",
            headers={**app, "Access-Control-Request-Headers": "authorization, content-type"},
        )
        assert status == 204 and headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "authorization" in headers["access-control-allow-headers"]
        status, headers, _ = raw(server, "GET", "/v1/models", headers=app)
        assert status == 200 and headers["access-control-allow-origin"] == "http://localhost:3000"
        assert raw(server, "GET", "/v1/models", headers=page)[0] == 403


def test_the_api_key_is_required_everywhere_but_health(idle_service: InferenceService) -> None:
    with running_server(idle_service, api_key="s3cret") as server:
        status, headers, body = raw(server, "GET", "/v1/models")
        assert status == 401 and error_of(body)["type"] == "authentication_error"
        assert headers["www-authenticate"].startswith("Bearer")
        assert raw(server, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert raw(server, "GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert raw(server, "GET", "/health")[0] == 200
        with (
            openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0) as wrong,
            pytest.raises(openai.AuthenticationError),
        ):
            wrong.models.list()
        with openai.OpenAI(base_url=server.url, api_key="s3cret", max_retries=0) as right:
            assert right.models.list().data == []


def test_a_request_with_no_model_loaded_says_so(idle_service: InferenceService) -> None:
    with running_server(idle_service) as server:
        body = json.dumps({"messages": [{"role": "user", "content": "Hi"}]}).encode()
        status, _, answer = raw(server, "POST", "/v1/chat/completions", body)
        assert status == 404 and "No model is loaded" in error_of(answer)["message"]


@pytest.mark.model
def test_a_library_model_is_loaded_on_request_only_when_allowed(
    idle_service: InferenceService, paths: Paths, starter_model: Path
) -> None:
    library = ModelLibrary(paths)
    body = json.dumps({"model": "starter", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    with running_server(idle_service, library=lambda: library) as server:
        status, _, answer = raw(server, "POST", "/v1/chat/completions", body.encode())
        assert status == 404 and error_of(answer)["code"] == "model_not_found"
        assert idle_service.loaded is None
    with running_server(idle_service, library=lambda: library, load_on_request=True) as server:
        status, _, answer = raw(server, "POST", "/v1/chat/completions", body.encode())
        assert status == 200, answer
        assert json.loads(answer)["model"] == starter_model.stem
        loaded = idle_service.loaded
        assert loaded is not None and loaded.path == starter_model
        with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client:
            listed = client.models.list().data
        assert listed[0].id == starter_model.stem and listed[0].model_extra == {"loaded": True}


@pytest.mark.model
def test_api_chats_reach_the_history_only_when_asked(
    idle_service: InferenceService, paths: Paths, starter_model: Path
) -> None:
    load = idle_service.load(starter_model, RuntimeSettings(n_ctx=1024, n_threads=2))
    assert load.wait(120) and load.error is None
    store = ConversationStore(paths.database_file)
    body = json.dumps(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello there"},
            ],
            "max_tokens": 3,
        }
    ).encode()
    try:
        with running_server(idle_service, history=History(lambda: store, owns_store=False)) as server:
            assert raw(server, "POST", "/v1/chat/completions", body)[0] == 200
        assert store.list_conversations() == []
        with running_server(
            idle_service, history=History(lambda: store, owns_store=False), store_requests=True
        ) as server:
            status, _, answer = raw(server, "POST", "/v1/chat/completions", body)
            assert status == 200
        reply = json.loads(answer)["choices"][0]["message"]["content"]
        (conversation,) = store.list_conversations()
        assert conversation.system_prompt == "Be brief."
        path = store.active_path(conversation.id)
        assert [(m.role, m.content) for m in path] == [("user", "Hello there"), ("assistant", reply)]
    finally:
        store.close()


@pytest.mark.model
def test_the_window_and_the_api_take_turns(starter_model: Path) -> None:
    """Jobs run round-robin by client: a window job queued behind three API jobs runs second."""
    service = InferenceService()
    try:
        load = service.load(starter_model, RuntimeSettings(n_ctx=1024, n_threads=2))
        assert load.wait(120) and load.error is None
        started, release = threading.Event(), threading.Event()

        def hold(_piece: str) -> None:
            started.set()
            release.wait(60)

        busy = service.chat(
            [{"role": "user", "content": "Hi"}], GenerationSettings(max_tokens=1), on_text=hold
        )
        assert started.wait(60)
        order: list[str] = []
        jobs: list[Job] = []
        for name, client in (("api1", "api"), ("api2", "api"), ("api3", "api"), ("window", "window")):
            job = service.tokenize(name, client=client)
            job.add_done_callback(lambda _j, name=name: order.append(name))
            jobs.append(job)
        release.set()
        assert busy.wait(60) and all(job.wait(60) for job in jobs)
        assert order == ["api1", "window", "api2", "api3"]
    finally:
        assert service.close(timeout=10)
