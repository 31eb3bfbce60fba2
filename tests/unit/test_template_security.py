"""A chat template is code from the internet: escapes and resource bombs are refused, and run nothing.

CVE-2024-34359 (llama-cpp-python rendering GGUF chat templates outside a sandbox) is the model for
the escape payloads; the resource payloads are the ones that hang or exhaust memory in a plain
Jinja sandbox.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llamadesk.chat import TemplateError, chat_format_for, render_prompt
from llamadesk.chat.templates import (
    MAX_NESTING,
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_CHARS,
    MAX_TEMPLATE_TAGS,
    MAX_TEMPLATE_TOKENS,
    MAX_TREE_DEPTH,
    ChatTemplateEnvironment,
)

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "Hello"},
]
REFUSED = "refused for security reasons"

# Each payload tries to reach Python internals; most would create the canary file if they got through.
ESCAPES = {
    "str_class_mro_subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "base_subclasses": "{{ ().__class__.__base__.__subclasses__() }}",
    "self_init_globals_builtins": (
        "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch ' ~ canary) }}"
    ),
    "template_reference_context": (
        "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch ' ~ canary) }}"
    ),
    "cycler_init_globals": "{{ cycler.__init__.__globals__.os.popen('touch ' ~ canary).read() }}",
    "joiner_init_globals": "{{ joiner.__init__.__globals__.os.popen('touch ' ~ canary).read() }}",
    "namespace_init_globals": "{{ namespace.__init__.__globals__.os.popen('touch ' ~ canary).read() }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].popen('touch ' ~ canary).read() }}",
    "raise_exception_globals": "{{ raise_exception.__globals__['os'].system('touch ' ~ canary) }}",
    "strftime_now_globals": "{{ strftime_now.__globals__ }}",
    "range_builtins": "{{ range.__self__ }}",
    "attr_filter": "{{ messages | attr('__class__') | attr('__mro__') }}",
    "attr_filter_in_map": "{{ messages | map(attribute='__class__') | list }}",
    "str_format_field": "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "str_format_globals": "{{ '{0.__globals__[os]}'.format(raise_exception) }}",
    "str_format_map": "{{ '{m.__class__}'.format_map({'m': messages}) }}",
    "percent_format": "{{ '%s' % messages.__class__ }}",
    "percent_format_mapping": "{{ '%(x)s' % {'x': self.__dict__} }}",
    "getitem_dunder": "{{ messages[0]['__class__'] }}",
    "getitem_on_list": "{{ messages['__class__'] }}",
    "bound_method_self": "{{ messages[0].items.__self__ }}",
    "loop_internals": "{% for m in messages %}{{ loop.__class__ }}{% endfor %}",
    "namespace_dict": "{% set ns = namespace(a=1) %}{{ ns.__dict__ }}",
    "set_then_use": "{% set c = ''.__class__ %}{{ c }}",
    "type_attribute": "{{ dict.fromkeys(messages) }}",
    "int_to_bytes": "{{ (1).to_bytes(10, 'big') }}",
    "str_translate": "{{ 'a'.translate({97: 'b'}) }}",
    "list_mutation": "{{ messages.append({'role': 'user', 'content': 'injected'}) }}",
    "dict_mutation": "{{ messages[0].update({'content': 'injected'}) }}",
    "os_name": "{{ os.popen('touch ' ~ canary).read() }}",
    "builtins_name": "{{ __builtins__.open(canary, 'w') }}",
    "import_name": "{{ __import__('os').system('touch ' ~ canary) }}",
    "eval_name": "{{ eval('1') }}",
    "config_flask_style": "{{ config.__class__.__init__.__globals__['os'] }}",
    "request_flask_style": "{{ request.application.__globals__.__builtins__ }}",
    "include_file": "{% include '/etc/passwd' %}",
    "import_template": "{% import 'macros.jinja' as m %}{{ m }}",
    "extends_template": "{% extends 'base.jinja' %}",
    "huge_range": "{% for i in range(10**10) %}{{ i }}{% endfor %}",
}

# Each payload would hang or exhaust memory in a plain sandbox.
BOMBS = {
    "nested_loops": "{% for i in range(20000) %}{% for j in range(20000) %}{% endfor %}{% endfor %}",
    "nested_loops_over_lists": (
        "{% set l = range(1000) | list %}{% for a in l %}{% for b in l %}{% for c in l %}{% endfor %}"
        "{% endfor %}{% endfor %}"
    ),
    "recursive_macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "recursive_loop": "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "string_repeat": "{{ 'x' * 10**9 }}",
    "list_repeat": "{{ ([0] * 10**9) | length }}",
    "concat_doubling": (
        "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    ),
    "plus_doubling": (
        "{% set ns = namespace(s=['x']) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
    ),
    "replace_bomb": "{{ ('a' * 1000) | replace('a', 'b' * 1000) | replace('b', 'c' * 1000) }}",
    "str_replace_bomb": "{{ ('a' * 1000).replace('a', 'b' * 1000).replace('b', 'c' * 1000) }}",
    "center_width": "{{ 'x' | center(10**9) }}",
    "ljust_width": "{{ 'x'.ljust(10**9) }}",
    "expandtabs": "{{ ('\t' * 100).expandtabs(10**8) }}",
    "indent_width": "{{ ('\n' * 100000) | indent(10**4) }}",
    "join_bomb": "{{ ('x' * 1000000).join(['a'] * 1000) }}",
    "join_filter_bomb": "{{ (['y' * 1000000] * 1000) | join }}",
    "percent_width": "{{ '%999999999d' % 1 }}",
    "percent_star_width": "{{ '%*d' % (10**9, 1) }}",
    "format_width": "{{ '{:>999999999}'.format(1) }}",
    "format_nested_width": "{{ '{:{}}'.format(1, 10**9) }}",
    "format_filter_width": "{{ '%0999999999d' | format(1) }}",
    "batch_fill": "{{ [1] | batch(10**9, 'x') | list }}",
    "slice_count": "{{ [1] | slice(10**9) | list }}",
    "int_power": "{{ 10 ** 100000 }}",
    "int_squaring": (
        "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}"
    ),
    "output_flood": "{% for i in range(20000) %}{{ 'x' * 1000 }}{% endfor %}",
    "tojson_indent": "{{ messages | tojson(indent=10**8) }}",
    "lipsum": "{{ lipsum(n=100000) }}",
    "slow_text_filter": "{{ ('x ' * 1000000) | wordwrap(1) }}",
    "sort_huge_list": "{{ ((range(20000) | list) * 200) | sort | length }}",
    "iterate_huge_string": "{{ ('x' * 3000000) | unique | list | length }}",
    "split_huge_string": "{{ ('x ' * 1000000).split() | length }}",
}

# Each payload shares one big list (or string) many times over: counted by their own length the lists
# are small, but written out, compared or summed they are gigabytes, built inside a single C call that
# never returns to the time check.
BIG = "{% set a = [0] * 100000 %}"
SHARED = BIG + "{% set ns = namespace(x=0) %}{% set l = [ns] * 1000 %}{% set ns.x = a %}"
NESTED_BOMBS = {
    "repeat_written_out": BIG + "{% set b = [a] * 1000 %}{{ b }}",
    "repeat_tojson": BIG + "{% set b = [a] * 1000 %}{{ b | tojson }}",
    "repeat_summed": "{% set a = [0] * 2000 %}{% set b = [a] * 2000 %}{{ b | sum(start=[]) }}",
    "repeat_within_item_limit": BIG + "{% set b = [a] * 100000 %}{{ b }}",
    "nested_repeat": "{% set a = [0] * 100 %}{{ [[a] * 1000] * 1000 }}",
    "plus_doubling_nested": (
        BIG + "{% set ns = namespace(x=[a] * 20) %}"
        "{% for i in range(10) %}{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x }}"
    ),
    "literal_doubling": (
        "{% set ns = namespace(x=[0], y=[0]) %}{% for i in range(60) %}"
        "{% set ns.x = [ns.x, ns.x] %}{% set ns.y = [ns.y, ns.y] %}{% endfor %}{{ ns.x == ns.y }}"
    ),
    "dict_values": BIG + "{{ [{'k': a, 'v': a}] * 1000 }}",
    "shared_string": "{% set s = 'x' * 1000000 %}{{ [s] * 1000 }}",
    "join_nested": BIG + "{{ ([a] * 1000) | join(',') }}",
    "string_filter": BIG + "{{ ([a] * 1000) | string | length }}",
    "tojson_indent": BIG + "{{ ([a] * 1000) | tojson(indent=2) | length }}",
    "tojson_indent_deep": (
        "{% set ns = namespace(x=[0] * 1000) %}{% for i in range(500) %}{% set ns.x = [ns.x] %}{% endfor %}"
        "{{ ns.x | tojson(indent=64) | length }}"
    ),
    "tojson_long_separators": "{{ ([0] * 100000) | tojson(separators=('x' * 1000, ':')) | length }}",
    "list_filter": BIG + "{{ ([a] * 1000) | list }}",
    "batch_fill": BIG + "{{ [0] | batch(20000, a) | list }}",
    "map_default": BIG + "{{ range(1000) | map(attribute='x', default=a) | list }}",
    "map_string": BIG + "{% set ns = namespace(x=a) %}{{ ([ns] * 1000) | map('string') | list | length }}",
    "namespace_written_out": SHARED + "{{ l }}",
    "namespace_join": SHARED + "{{ l | join | length }}",
    "namespace_string_filter": SHARED + "{{ l | string | length }}",
    "namespace_text_filter": SHARED + "{{ l | upper | length }}",
    "namespace_tilde": SHARED + "{{ (l ~ '') | length }}",
    "namespace_percent": SHARED + "{{ ('%s' % (l,)) | length }}",
    "namespace_str_format": SHARED + "{{ '{}'.format(l) | length }}",
    "namespace_format_filter": SHARED + "{{ '%s' | format(l) | length }}",
    "namespace_pprint": SHARED + "{{ l | pprint | length }}",
    "format_repeated_field": "{{ ('{0}' * 1000).format('x' * 1000000) | length }}",
    "percent_repeated_name": "{{ (('%(x)s' * 1000) % {'x': 'x' * 1000000}) | length }}",
    "pprint_long_key": "{{ {('k' * 100000): [0] * 1000} | pprint | length }}",
    "macro_varargs_doubling": (
        "{% macro g(n) %}{% if n %}{{ g(n - 1, varargs, varargs) }}{% else %}{{ varargs }}{% endif %}"
        "{% endmacro %}{{ g(60, [0]) }}"
    ),
    "macro_kwargs": (
        "{% set a = [0] * 100000 %}{% set b = [a] * 19 %}{% macro f() %}{{ kwargs | length }}{% endmacro %}"
        "{{ f(x1=b, x2=b, x3=b, x4=b, x5=b, x6=b) }}"
    ),
    "cycler_items": (
        "{% set a = [0] * 100000 %}{% set b = [a] * 19 %}{{ cycler(b, b, b, b, b, b, b, b, b, b).items }}"
    ),
}
# Each refusal of a nested value says which limit it hit.
NAMED_LIMIT = r"(more than|limited to)( the| values of)? [\d,]+ (characters|items|allowed)"


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def test_the_sandbox_is_jinjas_immutable_sandbox() -> None:
    env = ChatTemplateEnvironment()
    assert isinstance(env, ImmutableSandboxedEnvironment)
    assert env.trim_blocks and env.lstrip_blocks
    assert "lipsum" not in env.globals
    assert not env.is_safe_attribute("x", "__class__", str)
    assert not env.is_safe_attribute([], "append", [].append)
    assert not env.is_safe_attribute(1, "to_bytes", (1).to_bytes)
    assert env.is_safe_attribute("x", "strip", "x".strip)
    assert env.is_safe_attribute({}, "items", {}.items)


def test_there_are_at_least_ten_distinct_escape_payloads() -> None:
    assert len(ESCAPES) >= 10


@pytest.mark.parametrize("payload", list(ESCAPES.values()), ids=list(ESCAPES))
def test_escape_is_refused_and_runs_nothing(payload: str, canary: Path) -> None:
    messages = [dict(m) for m in MESSAGES]
    with pytest.raises(TemplateError, match=REFUSED) as caught:
        render_prompt(payload, messages, canary=str(canary))
    assert not canary.exists()
    assert messages == MESSAGES  # nothing was mutated either
    assert str(caught.value).startswith("The chat template was refused for security reasons: ")
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize("payload", list(BOMBS.values()), ids=list(BOMBS))
def test_resource_bomb_is_stopped_with_a_clear_error(payload: str) -> None:
    with pytest.raises(TemplateError, match=REFUSED):
        render_prompt(payload, MESSAGES)


def test_slow_template_is_stopped_by_the_time_limit() -> None:
    # Exponential macro recursion: few steps per call, so the clock is what stops it.
    payload = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"
    with pytest.raises(TemplateError, match=REFUSED + r": it (ran longer than 2 seconds|did more than)"):
        render_prompt(payload, MESSAGES)


def test_output_limit_is_named() -> None:
    with pytest.raises(TemplateError, match="its output is larger than"):
        render_prompt("{% for i in range(5000) %}{{ 'x' * 1000 }}{% endfor %}", MESSAGES)


def test_a_refusal_leaves_the_sandbox_usable() -> None:
    with pytest.raises(TemplateError):
        render_prompt(ESCAPES["cycler_init_globals"], MESSAGES)
    assert render_prompt("{{ messages[-1].content }}", MESSAGES[1:]) == "Hello"


def test_limits_leave_room_for_long_real_conversations() -> None:
    qwen3 = (Path(__file__).resolve().parents[1] / "data" / "templates" / "qwen3.jinja").read_text()
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " * 20} for i in range(3001)
    ]
    big = "long pasted document " * (MAX_OUTPUT_CHARS // 10)
    prompt = render_prompt(
        qwen3, [*turns, {"role": "assistant", "content": "ok"}, {"role": "user", "content": big}]
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    assert len(prompt) > MAX_OUTPUT_CHARS


def test_legitimate_string_methods_still_work() -> None:
    source = (
        "{{ messages[-1].content.strip().lower().startswith('hel') }}|"
        "{{ ', '.join(['a', 'b']) }}|{{ '{}-{}'.format(1, 2) }}|{{ '%05.1f' % 3.14159 }}|"
        "{{ 'a</think>b'.split('</think>')[-1] }}|{{ 'x' | center(5) }}|{{ range(3) | list }}"
    )
    assert render_prompt(source, MESSAGES[1:]) == "True|a, b|1-2|003.1|b|  x  |[0, 1, 2]"


@pytest.mark.parametrize("payload", list(NESTED_BOMBS.values()), ids=list(NESTED_BOMBS))
def test_shared_nested_value_is_refused_by_its_written_out_size(payload: str) -> None:
    with pytest.raises(TemplateError, match=REFUSED + ": .*" + NAMED_LIMIT):
        render_prompt(payload, MESSAGES)


@pytest.mark.parametrize(
    "name", ["repeat_written_out", "repeat_tojson", "repeat_summed", "repeat_within_item_limit"]
)
def test_shared_nested_value_is_refused_before_it_is_built(name: str) -> None:
    # Refused while the value is still a few shared lists: before, these took seconds and hundreds of
    # megabytes (30 GB for repeat_within_item_limit) before the output or result was found too large.
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match=r"would be more than [\d,]+ characters as text"):
            render_prompt(NESTED_BOMBS[name], MESSAGES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20


def test_size_checks_keep_no_dead_values_alive() -> None:
    # Measured lists are remembered by identity; 300 lists of 3 MB each must not all stay in memory.
    source = "{% for i in range(300) %}{% set t = [('x' * 3000000) ~ i] %}{% endfor %}done"
    tracemalloc.start()
    try:
        assert render_prompt(source, MESSAGES) == "done"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_shared_values_within_the_limits_still_work() -> None:
    source = (
        "{% set a = [0] * 100 %}{{ ([a] * 10) | sum(start=[]) | length }}|"
        "{{ [[1], [2, 3]] | sum(start=[]) }}|"
        "{{ [(1,), (2,)] | sum(start=()) }}|{{ [1, 2.5] | sum }}|{{ ([a] * 1000) | length }}|"
        "{{ ('{0}{0}'.format('ab')) }}|{{ '%(x)s-%(x)s' % {'x': 1} }}|{{ [1, [2]] | tojson(indent=1) }}|"
        "{% set ns = namespace(l=[]) %}{% for i in range(3) %}{% set ns.l = ns.l + [[i]] %}{% endfor %}"
        "{{ ns.l }}|{{ [1, 2, 3] | batch(2, 0) | list }}"
    )
    assert render_prompt(source, MESSAGES) == (
        "1000|[1, 2, 3]|(1, 2)|3.5|1000|abab|1-1|[\n 1,\n [\n  2\n ]\n]|[[0], [1], [2]]|[[1, 2], [3, 0]]"
    )


def test_nested_limits_leave_room_for_long_conversations_and_tools() -> None:
    # 2,000 turns of 3 KB, gathered into a list one by one, written out as JSON, plus 100 tools.
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 400} for i in range(2000)
    ]
    tools = [
        {"type": "function", "function": {"name": f"tool_{i}", "description": "Looks things up. " * 20}}
        for i in range(100)
    ]
    source = (
        "{% set ns = namespace(kept=[]) %}"
        "{% for m in messages %}{% set ns.kept = ns.kept + [m] %}{% endfor %}{{ ns.kept | tojson }}\n"
        "{{ tools | tojson(indent=4) }}\n{{ messages | map(attribute='role') | join }}"
    )
    prompt = render_prompt(source, turns, tools=tools)
    expected = "\n".join([json.dumps(turns), json.dumps(tools, indent=4), "".join(m["role"] for m in turns)])
    assert prompt == expected
    assert len(prompt) > MAX_OUTPUT_CHARS


# ------------------------------------------------------------------------------------------- compiling
# Compiling a template comes before the render budget starts. Unchecked, a 7.5 MB chain of {% if %} blocks
# (GGUF strings may be up to 64 MB) took 48 to 99 seconds and about 3 GB of memory to compile, a 2.3 MB
# one 10 to 15 seconds and 900 MB: such sources are refused before Jinja lexes or parses them.

IF_BLOCK = "{% if messages %}x{% endif %}\n"


def repeat(unit: str, chars: int) -> str:
    return unit * (chars // len(unit))


def nested(opening: str, inner: str, closing: str, depth: int) -> str:
    return opening * depth + inner + closing * depth


def macros(count: int) -> str:
    return "".join(f"{{% macro m{i}() %}}x{{% endmacro %}}" for i in range(count))


OVERSIZED = {
    "if_chain_7_5_mb": repeat(IF_BLOCK, 7_500_000),
    "if_chain_2_3_mb": repeat(IF_BLOCK, 2_300_000),
    "macros_2_mb": macros(52_000),
    "text_2_3_mb": "x" * 2_300_000,
    "string_literal_2_3_mb": "{{ '" + "x" * 2_300_000 + "' }}",
    "nested_brackets_2_3_mb": "{{ " + nested("(", "1", ")", 1_150_000) + " }}",
    "just_over_the_limit": "x" * (MAX_TEMPLATE_CHARS + 1),
}
# Within the size limit, but each would take seconds and hundreds of megabytes to compile.
TOO_COMPLEX = {
    "if_chain": repeat(IF_BLOCK, MAX_TEMPLATE_CHARS),
    "outputs": repeat("{{ bos_token }}", MAX_TEMPLATE_CHARS),
    "macros": macros(MAX_TEMPLATE_TAGS // 2 + 1),
    "for_loops": repeat("{% for m in messages %}{{ m }}{% endfor %}", MAX_TEMPLATE_CHARS),
    "list_literal": "{% set l = [" + repeat("1,", MAX_TEMPLATE_CHARS - 20) + "1] %}",
    "dict_literal": "{% set d = {" + repeat("1: 1, ", MAX_TEMPLATE_CHARS - 20) + "1: 1} %}",
    "sets": repeat("{% set a = 1 %}", MAX_TEMPLATE_CHARS),
    "filters_in_many_tags": repeat("{{ 'a' | trim | upper | lower | trim }}", MAX_TEMPLATE_CHARS),
}
# Nesting makes Jinja's parser and Python's compiler recurse; Python refuses very deep code outright.
TOO_DEEP = {
    "parentheses": "{{ " + nested("(", "1", ")", MAX_NESTING + 1) + " }}",
    "lists": "{{ " + nested("[", "", "]", MAX_NESTING + 1) + " }}",
    "dicts": "{{ " + nested("{'k': ", "1", "}", MAX_NESTING + 1) + " }}",
    "calls": "{{ " + nested("range(", "1", ")", MAX_NESTING + 1) + " }}",
    "if_blocks": nested("{% if messages %}", "x", "{% endif %}", MAX_NESTING + 1),
    "for_blocks": nested("{% for m in messages %}", "x", "{% endfor %}", MAX_NESTING + 1),
    "set_blocks": "".join(f"{{% set v{i} %}}" for i in range(MAX_NESTING + 1))
    + "{% endset %}" * (MAX_NESTING + 1),
    "mixed_blocks": nested(
        "{% with %}{% filter trim %}", "x", "{% endfilter %}{% endwith %}", MAX_NESTING // 2 + 1
    ),
    "macro_blocks": "".join(f"{{% macro m{i}() %}}" for i in range(MAX_NESTING + 1))
    + "{% endmacro %}" * (MAX_NESTING + 1),
    "operator_chain": "{{ 1" + " + 1" * MAX_TREE_DEPTH + " }}",
    "filter_chain": "{{ 'a'" + " | trim" * MAX_TREE_DEPTH + " }}",
    "attribute_chain": "{{ messages" + ".a" * MAX_TREE_DEPTH + " }}",
    "item_chain": "{{ messages" + "[0]" * MAX_TREE_DEPTH + " }}",
    "long_operator_chain": "{{ 1" + " + 1" * 2_000 + " }}",
    "not_chain": "{{ " + "not " * 5_000 + "1 }}",
    "negation_chain": "{{ " + "-" * 5_000 + "1 }}",
    "conditional_chain": "{{ 1" + " if messages else 1" * 500 + " }}",
}


def refusal_peak_memory(payload: str, match: str) -> int:
    """Render ``payload``, expecting a security refusal matching ``match``; returns the peak memory used."""
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match=REFUSED + ": " + match) as caught:
            render_prompt(payload, MESSAGES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "security"
    return peak


@pytest.mark.parametrize("payload", list(OVERSIZED.values()), ids=list(OVERSIZED))
def test_oversized_template_is_refused_before_it_is_read(payload: str) -> None:
    expected = (
        f"it is too long to compile safely: {len(payload):,} characters, more than the {MAX_TEMPLATE_CHARS:,}"
    )
    assert refusal_peak_memory(payload, expected) < 2**20  # nothing was lexed, parsed or compiled


@pytest.mark.parametrize("payload", list(TOO_COMPLEX.values()), ids=list(TOO_COMPLEX))
def test_too_complex_template_is_refused_before_it_is_parsed(payload: str) -> None:
    assert len(payload) <= MAX_TEMPLATE_CHARS
    with pytest.raises(
        TemplateError, match=REFUSED + r": it is too complex to compile safely: more than the"
    ) as caught:
        render_prompt(payload, MESSAGES)
    assert caught.value.reason == "security"


def test_refusing_a_complex_template_takes_little_memory() -> None:
    # Compiled, this one took over 100 MB.
    assert refusal_peak_memory(TOO_COMPLEX["if_chain"], "it is too complex") < 4 * 2**20


@pytest.mark.parametrize("payload", list(TOO_DEEP.values()), ids=list(TOO_DEEP))
def test_too_deeply_nested_template_is_refused_before_it_is_compiled(payload: str) -> None:
    assert len(payload) <= MAX_TEMPLATE_CHARS
    with pytest.raises(
        TemplateError, match=REFUSED + ": it is nested too deeply to compile safely"
    ) as caught:
        render_prompt(payload, MESSAGES)
    assert caught.value.reason == "security"


def list_of(items: int) -> str:
    """A template of ``2 * items + 11`` tokens that writes ``items``."""
    return "{% set l = [" + "1," * (items - 1) + "1] %}{{ l | length }}"


def test_templates_at_the_limits_compile_and_render() -> None:
    one = MESSAGES[1:]
    items = (MAX_TEMPLATE_TOKENS - 11) // 2
    assert render_prompt(list_of(items), one) == str(items)
    assert render_prompt("{{ 1 }}" * MAX_TEMPLATE_TAGS, one) == "1" * MAX_TEMPLATE_TAGS
    assert render_prompt("{{ " + nested("(", "1", ")", MAX_NESTING) + " }}", one) == "1"
    assert render_prompt("{{ " + nested("[", "", "]", MAX_NESTING) + " | length }}", one) == "1"
    assert render_prompt(nested("{% for m in messages %}", "x", "{% endfor %}", MAX_NESTING), one) == "x"
    assert render_prompt(nested("{% if messages %}", "x", "{% endif %}", MAX_NESTING), one) == "x"
    assert render_prompt("{{ 1" + " + 1" * (MAX_TREE_DEPTH - 5) + " }}", one) == str(MAX_TREE_DEPTH - 4)


def test_one_token_or_tag_more_than_allowed_is_refused() -> None:
    one = MESSAGES[1:]
    with pytest.raises(TemplateError, match=r"more than the [\d,]+ tokens allowed"):
        render_prompt(list_of((MAX_TEMPLATE_TOKENS - 11) // 2 + 1), one)
    with pytest.raises(TemplateError, match=r"more than the [\d,]+ tags allowed"):
        render_prompt("{{ 1 }}" * (MAX_TEMPLATE_TAGS + 1), one)


def test_compiling_at_the_limits_takes_bounded_memory() -> None:
    # Macros cost the most memory per tag; at 2 MB, before the limits, they took 1.6 GB and three minutes.
    tracemalloc.start()
    try:
        template = ChatTemplateEnvironment().from_string(macros(MAX_TEMPLATE_TAGS // 2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 96 * 2**20
    assert template.module.m0() == "x"


def test_limits_leave_room_for_templates_three_times_the_largest_real_one() -> None:
    # The largest real chat templates are about 40 KB (GigaChat 3.5, 40,436 characters); this one is
    # three times that, made only of real template code.
    real = sorted((Path(__file__).resolve().parents[1] / "data" / "templates").glob("*.jinja"))
    source = "".join(
        f"{{% macro {path.stem}_{copy}() %}}{path.read_text(encoding='utf-8')}{{% endmacro %}}"
        for copy in range(4)
        for path in real
    )
    assert len(source) > 3 * 40_436
    chatml = next(path for path in real if path.stem == "chatml").read_text(encoding="utf-8")
    assert render_prompt(source + "{{ chatml_3() }}", MESSAGES) == render_prompt(chatml, MESSAGES)


def test_a_refused_template_reaches_the_user_as_a_template_error() -> None:
    chat = chat_format_for(OVERSIZED["if_chain_7_5_mb"], "<s>", "</s>")
    assert not chat.is_fallback  # the user is told why, rather than given a different format silently
    with pytest.raises(TemplateError, match=REFUSED + ": it is too long to compile safely"):
        chat.render(MESSAGES)
