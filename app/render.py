"""Showing untrusted text (prompts, answers, rationales, notes) as formatted, inert HTML.

Prompts come from anyone who can import a file and answers from a model that imitates the
web, so both may hold HTML. A browser must only ever read it: no tag may become an element,
no image be fetched (a tracking pixel), no link run script. Splitting on backticks cannot
match a Markdown parser (an escaped backtick opens no code span), so the text goes through
a real CommonMark parser, markdown-it, on the server, with raw HTML off: every tag comes out
as escaped text. Images are off too, as remote images are requests the reader never chose,
and links may only go to http(s) addresses, opened in a new tab without a referrer.

The result is shown in a `gr.HTML`, whose template inserts it as is; a `gr.Markdown` would
parse it a second time in the browser.
"""
import html

import gradio as gr
from markdown_it import MarkdownIt

MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")
MARKDOWN.validateLink = lambda url: url.strip().lower().startswith(("http://", "https://"))


def _link_open(renderer, tokens, idx, options, env):
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    tokens[idx].attrSet("target", "_blank")
    return renderer.renderToken(tokens, idx, options, env)


MARKDOWN.add_render_rule("link_open", _link_open)

# Long words and code stay inside the answer's box rather than widening the page; a cut-off
# answer's note stands out from the answer.
CSS = """
.untrusted { overflow-wrap: anywhere; }
.untrusted pre { white-space: pre-wrap; overflow-x: auto; }
.cut-off { color: #b45309; font-style: italic; margin-top: 0.5em; }
/* Vega-Lite's width "container" needs a container with a width (see app/plots.py) */
.chart .altair, .chart .altair > div:first-child { width: 100%; }
"""


def text_html(text: str | None) -> str:
    """One untrusted text as HTML, in a box of its own: an unclosed code fence or list in it
    ends at the box's edge, never swallowing what the page shows next."""
    return f'<div class="untrusted">{MARKDOWN.render(text or "")}</div>'


def gallery_html(entries: list[dict]) -> str:
    """The pinned examples, each text rendered on its own."""
    if not entries:
        return "<p>Nothing pinned yet.</p>"
    parts = []
    for g in entries:
        parts.append(
            f"<h3>{html.escape(g['note'] or 'Example ' + str(g['id']))}</h3>"
            f"<p><strong>Prompt</strong></p>{text_html(g['prompt'])}"
            f"<p><strong>Version {int(g['version_a'])}</strong></p>{text_html(g['completion_a'])}"
            f"<p><strong>Version {int(g['version_b'])}</strong></p>{text_html(g['completion_b'])}")
    return "<hr>".join(parts)


def text_box(**kwargs) -> gr.HTML:
    """A `gr.HTML` for `text_html` output, with none of the component's default click script."""
    return gr.HTML(js_on_load=None, padding=True, **kwargs)


def refusal(error: Exception) -> gr.Error:
    """A refusal for whoever sent the request. Gradio shows an Error's message as HTML, and a
    message may quote what was sent (a choice, a number, a name)."""
    return gr.Error(html.escape(str(error), quote=False))
