"""Markdown to Qt rich text: structure, highlighting, copy links and safety."""

from __future__ import annotations

from llamadesk.ui.markdown import COPY_CODE_SCHEME, document_stylesheet, render_markdown

CODE = 'def greet(name: str) -> str:\n    return f"hi {name}"\n'


def test_headings_lists_and_inline_code() -> None:
    out = render_markdown("# Title\n\n## Sub\n\n- one\n- two\n\n1. first\n\nUse `x < y` here.")
    assert "<h1>Title</h1>" in out.html
    assert "<h2>Sub</h2>" in out.html
    assert "<ul>" in out.html and "<li>two</li>" in out.html
    assert "<ol>" in out.html
    assert "<code" in out.html and "x &lt; y</code>" in out.html
    assert out.code_blocks == ()


def test_tables_get_visible_borders() -> None:
    out = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert '<table border="1"' in out.html
    assert "<th>a</th>" in out.html and "<td>2</td>" in out.html


def test_fenced_code_is_highlighted_inline_and_collected() -> None:
    out = render_markdown(f"Before\n\n```python\n{CODE}```\n\nAfter\n\n```\nplain <text>\n```\n")
    # "Copy" gives the code as written, without the newline before the closing fence
    assert out.code_blocks == (CODE.removesuffix("\n"), "plain <text>")
    # pygments with inline styles: keywords carry their colour in a style attribute, no CSS classes
    assert '<span style="color: #008000; font-weight: bold">def</span>' in out.html
    assert 'class="' not in out.html
    assert f'href="{COPY_CODE_SCHEME}:0"' in out.html and f'href="{COPY_CODE_SCHEME}:1"' in out.html
    assert "plain &lt;text&gt;" in out.html


def test_dark_theme_uses_dark_code_style_and_code_font() -> None:
    light = render_markdown(f"```python\n{CODE}```", code_font="Fira Code")
    dark = render_markdown(f"```python\n{CODE}```", dark=True, code_font="Fira Code")
    assert light.html != dark.html
    assert "#0d1117" in dark.html
    assert "font-family: 'Fira Code'" in dark.html
    assert "a {" in document_stylesheet(True)


def test_unknown_language_falls_back_to_plain_text() -> None:
    out = render_markdown("```nosuchlang\nx = 1\n```")
    assert out.code_blocks == ("x = 1",)
    assert "nosuchlang" in out.html


def test_raw_html_is_escaped_and_images_become_links() -> None:
    out = render_markdown(
        "<script>alert(1)</script>\n\n![a cat](https://example.com/cat.png) [site](https://example.com)"
    )
    assert "<script>" not in out.html
    assert "<img" not in out.html
    assert '<a href="https://example.com/cat.png">a cat</a>' in out.html
    assert '<a href="https://example.com">site</a>' in out.html


def test_unterminated_fence_while_streaming_still_renders() -> None:
    out = render_markdown("Here:\n\n```python\nprint(1)\n")
    assert out.code_blocks == ("print(1)",)


def test_single_newlines_are_line_breaks_in_chat_messages() -> None:
    # Shift+Enter lines in a message, or a poem from the model, stay on their own lines.
    out = render_markdown("Roses are red,\nviolets are blue.\n\n- one\n- two", breaks=True)
    assert "Roses are red,<br />" in out.html
    assert "<li>one</li>" in out.html
    # a hard-wrapped document (a model card's README) still reads as one paragraph
    assert "<br" not in render_markdown("A model card paragraph\nwrapped at eighty columns.").html


def test_dangerous_link_schemes_are_not_links() -> None:
    out = render_markdown(
        "[run](javascript:alert(1)) [read](file:///etc/passwd) <javascript:alert(1)> "
        "[page](data:text/html,hi) ![pic](javascript:alert(1))"
    )
    assert "<a " not in out.html
    assert "[run](javascript:alert(1))" in out.html  # shown as the text the model wrote


def test_bare_web_addresses_become_links_but_file_names_stay_text() -> None:
    out = render_markdown("Docs: https://example.com/guide?x=1. Edit main.py, mail me@example.org.")
    assert '<a href="https://example.com/guide?x=1">https://example.com/guide?x=1</a>' in out.html
    assert "main.py" in out.html and 'href="http://main.py"' not in out.html
    assert "mailto:" not in out.html
    assert "<a " not in render_markdown("`https://example.com` in code").html


def test_copy_code_links_with_odd_numbers_name_no_block() -> None:
    from llamadesk.ui.markdown import code_block_index

    assert code_block_index("3") == 3
    for path in ("²", "٣", "-1", "", "99999999999999999999", "1e3"):
        assert code_block_index(path) == -1, path
