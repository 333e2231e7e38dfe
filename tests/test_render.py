from app.annotate import safe_markdown


def test_html_is_shown_as_text_outside_code():
    out = safe_markdown('Hi <img src=x onerror="alert(1)"> & <script>alert(2)</script>')
    assert "<" not in out and "&lt;img src=x" in out and "&amp;" in out


def test_code_is_left_for_markdown_to_show_verbatim():
    text = "Use `a < b` here:\n```html\n<b>bold</b>\n```\nthen <i>this</i>"
    out = safe_markdown(text)
    assert "`a < b`" in out and "```html\n<b>bold</b>\n```" in out and "&lt;i&gt;" in out


def test_unclosed_fence_runs_to_the_end():
    assert safe_markdown("```python\nif a < b:") == "```python\nif a < b:"
