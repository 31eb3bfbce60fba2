"""Limits on a chat template's source, checked before Jinja parses and compiles it.

Compiling comes before any render budget starts, and its cost grows with the template: unchecked, a
7.5 MB template (GGUF strings may be up to 64 MB) took 50 to 100 seconds and about 3 GB of memory to
compile. The largest real chat templates are about 40 KB (GigaChat 3.5: 40,436 characters; gpt-oss:
17,044), with some 6,000 tokens, 900 tags, brackets nested 2 to 4 deep, blocks about 8 deep and a
syntax tree about 20 levels deep. The limits here are several times that, and anything within them
compiles in under a second and 100 MB. Each check is one pass that stops at the first limit crossed.
"""

from __future__ import annotations

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.lexer import (
    TOKEN_BLOCK_BEGIN,
    TOKEN_BLOCK_END,
    TOKEN_NAME,
    TOKEN_OPERATOR,
    TOKEN_VARIABLE_BEGIN,
    Lexer,
    ignored_tokens,
)

MAX_TEMPLATE_CHARS = 256 * 1024
"""Longest template source, in characters: over six times the largest real chat template (40 KB)."""
MAX_TEMPLATE_TOKENS = 32_768
"""Most tokens (names, operators, values, tag delimiters, text runs) in a template: real ones have ~6,000."""
MAX_TEMPLATE_TAGS = 4_096
"""Most ``{% ... %}`` and ``{{ ... }}`` tags in a template: real ones have up to about 1,000."""
MAX_NESTING = 16
"""Deepest nesting of brackets within an expression, and of blocks (``if``, ``for``, ...) within blocks.

Real templates nest up to about 8 deep; Python compiles at most 20 loops one inside another."""
MAX_TREE_DEPTH = 100
"""Deepest syntax tree (an operator chain such as ``a + b + c ...`` nests without brackets).

Compiling recurses once per level, and Python refuses code nested 200 brackets deep."""

_BLOCKS = frozenset({"if", "for", "macro", "call", "filter", "with", "autoescape", "block"})
_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")


def _too_complex(what: str) -> SecurityError:
    return SecurityError(f"it is too complex to compile safely: {what}")


def _too_deep(what: str, limit: int, lineno: int) -> SecurityError:
    return SecurityError(
        f"it is nested too deeply to compile safely: {what} more than {limit} deep on line {lineno}"
    )


def check_source(lexer: Lexer, source: str, name: str | None = None) -> None:
    """Refuse (:class:`SecurityError`) a source too long, with too many tokens or tags, or nested too deeply.

    One pass of Jinja's lexer, which costs a fraction of parsing and compiling. A syntax error ends the
    check early: parsing then reports it, or an earlier error, exactly as Jinja would.
    """
    if len(source) > MAX_TEMPLATE_CHARS:
        raise SecurityError(
            f"it is too long to compile safely: {len(source):,} characters, more than the "
            f"{MAX_TEMPLATE_CHARS:,} allowed"
        )
    tokens = tags = brackets = blocks = 0
    statement = False  # the next token names the statement: it may open or close a block
    block_set = False  # a {% set %} without "=" is a block, closed by {% endset %}
    try:
        for lineno, kind, value in lexer.tokeniter(source, name):
            if kind in ignored_tokens:
                continue
            tokens += 1
            if tokens > MAX_TEMPLATE_TOKENS:
                raise _too_complex(f"more than the {MAX_TEMPLATE_TOKENS:,} tokens allowed")
            if kind in (TOKEN_BLOCK_BEGIN, TOKEN_VARIABLE_BEGIN):
                tags += 1
                if tags > MAX_TEMPLATE_TAGS:
                    raise _too_complex(f"more than the {MAX_TEMPLATE_TAGS:,} tags allowed")
                statement = kind == TOKEN_BLOCK_BEGIN
                continue
            opened = False
            if kind == TOKEN_OPERATOR:
                if value in _OPENING:
                    brackets += 1
                    if brackets > MAX_NESTING:
                        raise _too_deep("brackets", MAX_NESTING, lineno)
                elif value in _CLOSING:
                    brackets -= 1
                elif value == "=":
                    block_set = False
            elif kind == TOKEN_NAME and statement:
                opened = value in _BLOCKS
                block_set = value == "set"
                if value.startswith("end"):
                    blocks -= 1
            elif kind == TOKEN_BLOCK_END:
                opened, block_set = block_set, False
            if opened:
                blocks += 1
                if blocks > MAX_NESTING:
                    raise _too_deep("blocks", MAX_NESTING, lineno)
            statement = False
    except TemplateSyntaxError:
        return


def check_tree(tree: nodes.Node) -> None:
    """Refuse (with :class:`SecurityError`) a parsed template whose syntax tree is too deep to compile."""
    pending = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_TREE_DEPTH:
            raise _too_deep("expressions", MAX_TREE_DEPTH, node.lineno)
        pending.extend((child, depth + 1) for child in node.iter_child_nodes())
