"""Planning a context shift: which cached tokens serve a prompt whose oldest turns were left out."""

from __future__ import annotations

from llamadesk.engine.kv_shift import MIN_MOVED, ReusePlan, common_prefix, plan_reuse

HEAD = list(range(1000, 1010))  # the system prompt's tokens


def turn(n: int, size: int = 20) -> list[int]:
    """The tokens of turn ``n``: distinct from every other turn's."""
    return [n * 100 + i for i in range(size)]


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0


def test_a_prompt_that_continues_the_cache_needs_no_shift() -> None:
    cached = HEAD + turn(1) + turn(2)
    prompt = cached + turn(3)
    assert plan_reuse(cached, prompt, head=len(HEAD)) == ReusePlan(len(cached))


def test_dropped_turns_are_cut_and_the_rest_moved_back() -> None:
    cached = HEAD + turn(1) + turn(2) + turn(3) + turn(4)
    prompt = HEAD + turn(3) + turn(4) + turn(5)
    plan = plan_reuse(cached, prompt, head=len(HEAD))
    assert plan.shifts
    assert (plan.keep, plan.cut, plan.moved) == (len(HEAD), 40, 40)
    assert plan.reused == len(HEAD) + 40
    # What the cache holds after the plan is exactly the start of the prompt.
    kept = cached[: plan.keep] + cached[plan.keep + plan.cut : plan.keep + plan.cut + plan.moved]
    assert kept == prompt[: plan.reused]


def test_no_shift_without_a_head() -> None:
    """Nothing was dropped (or the caller does not allow it): only the common prefix serves."""
    cached = HEAD + turn(1) + turn(2) + turn(3)
    prompt = HEAD + turn(2) + turn(3) + turn(4)
    assert plan_reuse(cached, prompt, head=None) == ReusePlan(len(HEAD))


def test_a_changed_system_prompt_never_moves_the_old_turns() -> None:
    cached = HEAD + turn(1) + turn(2) + turn(3)
    new_head = [*HEAD[:-1], 9999]
    prompt = new_head + turn(2) + turn(3) + turn(4)
    plan = plan_reuse(cached, prompt, head=len(new_head))
    assert not plan.shifts and plan.reused == len(HEAD) - 1


def test_an_edited_message_is_not_patched_from_its_old_version() -> None:
    """The cache holds the old text of a message whose start changed: the tail is not moved in."""
    old = turn(2, size=60)
    edited = [7, *old[1:]]
    cached = HEAD + turn(1) + old
    prompt = HEAD + turn(1) + edited
    plan = plan_reuse(cached, prompt, head=len(HEAD))
    assert not plan.shifts and plan.reused == len(HEAD) + 20


def test_a_short_match_is_not_worth_a_shift() -> None:
    cached = HEAD + turn(1) + turn(2, size=MIN_MOVED - 1)
    prompt = HEAD + turn(2, size=MIN_MOVED - 1) + turn(3)
    assert not plan_reuse(cached, prompt, head=len(HEAD)).shifts
    cached = HEAD + turn(1) + turn(2, size=MIN_MOVED)
    prompt = HEAD + turn(2, size=MIN_MOVED) + turn(3)
    assert plan_reuse(cached, prompt, head=len(HEAD)).moved == MIN_MOVED


def test_the_longest_match_wins_over_repeated_openers() -> None:
    """Every turn starts with the same marker tokens; the shift lines up the real kept text."""
    opener = [1, 2, 3]
    cached = HEAD + opener + turn(1) + opener + turn(2) + opener + turn(3)
    prompt = HEAD + opener + turn(2) + opener + turn(3) + opener + turn(4)
    plan = plan_reuse(cached, prompt, head=len(HEAD))
    assert plan.keep == len(HEAD)
    assert plan.moved == 2 * (len(opener) + 20)  # the rest of the cache
    assert plan.cut == len(opener) + 20


def test_a_cache_of_another_conversation_gives_nothing_beyond_the_head() -> None:
    cached = HEAD + turn(1) + turn(2)
    prompt = HEAD + turn(7) + turn(8)
    assert plan_reuse(cached, prompt, head=len(HEAD)) == ReusePlan(len(HEAD))
