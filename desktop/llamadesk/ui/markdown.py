"""Markdown to Qt rich-text HTML for chat messages, with pygments-highlighted code blocks.

Qt's rich text engine understands only a subset of HTML/CSS and no external style classes, so
every colour is written inline. Code blocks get a header with the language and a "Copy" link
whose href (``copy-code:N``) indexes into ``RenderedMarkdown.code_blocks``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound

COPY_CODE_SCHEME = "copy-code"


def code_block_index(path: str) -> int:
    """The code block a ``copy-code:N`` link names, or -1 (a reply may hold any link text)."""
    return int(path) if path.isascii() and path.isdigit() and len(path) < 10 else -1


LIGHT_CODE_STYLE = "default"
DARK_CODE_STYLE = "github-dark"
DEFAULT_CODE_FONT = "monospace"


@dataclass(frozen=True)
class RenderedMarkdown:
    """HTML for a QTextDocument plus the exact source of each fenced/indented code block."""

    html: str
    code_blocks: tuple[str, ...]


@dataclass(frozen=True)
class _Palette:
    text: str
    muted: str
    border: str
    code_bg: str
    code_header_bg: str
    inline_code_bg: str
    link: str
    quote: str


_LIGHT = _Palette(
    text="#1f2328",
    muted="#6e7781",
    border="#d0d7de",
    code_bg="#f6f8fa",
    code_header_bg="#eaeef2",
    inline_code_bg="#eff1f3",
    link="#0969da",
    quote="#57606a",
)
_DARK = _Palette(
    text="#e6edf3",
    muted="#8d96a0",
    border="#30363d",
    code_bg=get_style_by_name(DARK_CODE_STYLE).background_color or "#0d1117",
    code_header_bg="#1f242c",
    inline_code_bg="#343941",
    link="#4493f8",
    quote="#9198a1",
)


def palette(dark: bool) -> _Palette:
    """Colours used by the rendered HTML for the light or dark theme."""
    return _DARK if dark else _LIGHT


def document_stylesheet(dark: bool) -> str:
    """Default stylesheet for a QTextDocument showing rendered Markdown (element-level rules only)."""
    p = palette(dark)
    return (
        f"a {{ color: {p.link}; text-decoration: none; }}"
        f"blockquote {{ color: {p.quote}; }}"
        "h1 { font-size: x-large; } h2 { font-size: large; } h3 { font-size: medium; }"
        "h4, h5, h6 { font-size: medium; }"
        "th { font-weight: bold; }"
    )


@lru_cache(maxsize=4)
def _formatter(style: str) -> HtmlFormatter[str]:
    return HtmlFormatter(nowrap=True, noclasses=True, style=style)


@lru_cache(maxsize=64)
def _lexer(language: str) -> Any:
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=True)
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=True)


def _code_block_html(code: str, language: str, index: int, dark: bool, code_font: str) -> str:
    p = palette(dark)
    lexer = _lexer(language.lower()) if language else TextLexer(stripnl=False, ensurenl=True)
    body = highlight(code, lexer, _formatter(DARK_CODE_STYLE if dark else LIGHT_CODE_STYLE))
    if body.endswith("\n"):
        body = body[:-1]
    label = html.escape(language) if language else "code"
    font = html.escape(code_font, quote=True)
    return (
        '<table width="100%" cellspacing="0" cellpadding="0" border="0" '
        'style="margin-top: 6px; margin-bottom: 6px;">'
        f'<tr><td style="background-color: {p.code_header_bg}; padding: 4px 10px;">'
        f'<span style="color: {p.muted}; font-size: small;">{label}</span></td>'
        f'<td align="right" style="background-color: {p.code_header_bg}; padding: 4px 10px;">'
        f'<a href="{COPY_CODE_SCHEME}:{index}" style="font-size: small;">Copy</a></td></tr>'
        f'<tr><td colspan="2" style="background-color: {p.code_bg}; padding: 8px 10px;">'
        f"<pre style=\"margin: 0; white-space: pre-wrap; font-family: '{font}';\">{body}</pre>"
        "</td></tr></table>"
    )


def _build_parser(dark: bool, code_font: str, breaks: bool) -> MarkdownIt:
    p = palette(dark)
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False, "breaks": breaks})
    md.enable(["table", "strikethrough", "linkify"])
    # Bare http(s) addresses become links; "main.py" or "user@host" in a reply stay text.
    if md.linkify is not None:
        md.linkify.set({"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
    font = html.escape(code_font, quote=True)

    def fence(_self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
        blocks: list[str] = env.setdefault("code_blocks", [])
        blocks.append(token.content.removesuffix("\n"))  # copied without the fence's last newline
        index = env.get("first_code_index", 0) + len(blocks) - 1
        return _code_block_html(token.content, language, index, dark, code_font)

    def code_inline(_self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return (
            f"<code style=\"background-color: {p.inline_code_bg}; font-family: '{font}';\">"
            f"{html.escape(tokens[idx].content)}</code>"
        )

    def table_open(_self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return (
            f'<table border="1" cellspacing="0" cellpadding="5" '
            f'style="border-collapse: collapse; border-color: {p.border}; border-style: solid; '
            'margin-top: 6px; margin-bottom: 6px;">'
        )

    def image(_self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        # Never fetch remote images: show them as a link the user can choose to open.
        token = tokens[idx]
        src = html.escape(str(token.attrGet("src") or ""), quote=True)
        alt = html.escape(token.content or "image")
        return f'<a href="{src}">{alt}</a>'

    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", fence)
    md.add_render_rule("code_inline", code_inline)
    md.add_render_rule("table_open", table_open)
    md.add_render_rule("image", image)
    return md


@lru_cache(maxsize=8)
def _parser(dark: bool, code_font: str, breaks: bool) -> MarkdownIt:
    return _build_parser(dark, code_font, breaks)


def render_markdown(
    text: str,
    *,
    dark: bool = False,
    code_font: str = "",
    first_code_index: int = 0,
    breaks: bool = False,
) -> RenderedMarkdown:
    """Render Markdown (CommonMark + tables + strikethrough) to Qt rich-text HTML; raw HTML is escaped.

    ``first_code_index`` numbers the copy links of a fragment that continues an earlier rendered part.
    ``breaks`` makes a single newline a line break, as people (and models writing poems, addresses or
    steps) mean it in a chat message; documents such as model cards keep CommonMark's joined lines.
    """
    env: dict[str, Any] = {"code_blocks": [], "first_code_index": first_code_index}
    body = _parser(dark, code_font or DEFAULT_CODE_FONT, breaks).render(text, env)
    return RenderedMarkdown(html=body.strip(), code_blocks=tuple(env["code_blocks"]))
