"""Hostile text (prompts, answers, notes) is read, never run: 28 cases from tests/data.

Each case points any request it could make at a local listener. In real Chromium, through
the Annotate view and the Compare tab's gallery, no request may reach it, no element may
appear beyond formatted text, and the text stays readable. The same corpus checks the
renderer and the gallery's Markdown file without a browser.
"""
import http.server
import json
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from app.render import text_html
from storage import evaluations
from storage.db import open_db

from .conftest import add_pair, start_app

CORPUS = json.loads((Path(__file__).parent / "data" / "hostile_texts.json").read_text())
# What formatted text may be made of; anything else came from the text itself.
TAGS = {"div", "p", "br", "hr", "em", "strong", "code", "pre", "a", "ul", "ol", "li", "blockquote",
        "h1", "h2", "h3", "h4", "h5", "h6"}
ATTRS = {"class", "href", "rel", "target", "start"}


def cases(url: str) -> list[dict]:
    return [{**c, "text": c["text"].replace("{URL}", url)} for c in CORPUS]


class Elements(HTMLParser):
    def __init__(self, html: str):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(html: str, case: dict):
    parsed = Elements(html)
    for tag, attrs in parsed.tags:
        assert tag in TAGS and set(attrs) <= ATTRS, (case["name"], tag, attrs)
        assert attrs.get("href", "http://").startswith(("http://", "https://")), (case["name"], attrs)
    assert case["shows"] in "".join(parsed.text), case["name"]


@pytest.mark.parametrize("case", cases("http://127.0.0.1:9"), ids=lambda c: c["name"])
def test_rendered_text_has_no_element_but_formatting(case):
    assert_inert(text_html(case["text"]), case)


def test_gallery_file_stays_text_in_a_renderer_that_allows_html(tmp_path):
    """gallery.md is pasted into reports and slides, whose renderers may pass HTML through."""
    db = open_db(tmp_path / "prefloop.db")
    for case in cases("http://127.0.0.1:9"):
        pin_example(db, case["text"])
    permissive = MarkdownIt("commonmark", {"html": True})
    document = permissive.render(evaluations.gallery_markdown(db))
    tags = {tag for tag, _ in Elements(document).tags}
    assert tags <= TAGS - {"a"}, tags - TAGS  # not even a link: some renderers keep javascript: ones
    assert document.count("<h2>") == len(CORPUS)  # no unclosed fence swallowed a later example


def pin_example(db, text: str) -> None:
    from storage import queries
    queries.ensure_base_version(db, "tiny")
    cid = evaluations.add_comparison(db, prompt=text, version_a=0, version_b=0, completion_a=text,
                                     completion_b="plain answer", sampling={}, seed=1, blind=False,
                                     created_by="alice")
    evaluations.pin(db, cid, text, by="alice")


class Listener(http.server.ThreadingHTTPServer):
    """Records every request: any one of them is a leak."""
    def __init__(self):
        self.paths = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                paths.append(self.path)
                self.send_response(204)
                self.end_headers()
            do_POST = do_GET

            def log_message(self, *args):
                pass
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


# Run in the page: every element inside a shown text, and anything a case could have created
# elsewhere (a form, a frame, an element pointing at the listener, the overlay).
PAGE_CHECK = """(port) => {
  const inside = [...document.querySelectorAll('.untrusted, .untrusted *')].map(e =>
    [e.tagName.toLowerCase(), e.getAttributeNames()]);
  const stray = [...document.querySelectorAll(
    'iframe, object, embed, video, audio, meta[http-equiv], #overlay, .untrusted form, .untrusted input')]
    .map(e => e.outerHTML.slice(0, 80));
  const pointing = [...document.querySelectorAll('[src], [action], [data], link[href], base[href]')]
    .filter(e => e.outerHTML.includes(':' + port)).map(e => e.outerHTML.slice(0, 80));
  return {inside, stray, pointing, text: [...document.querySelectorAll('.untrusted')].map(e => e.innerText)};
}"""


def check_page(page, listener) -> list[str]:
    found = page.evaluate(PAGE_CHECK, listener.server_address[1])
    for tag, attrs in found["inside"]:
        assert tag in TAGS and set(attrs) <= ATTRS, (tag, attrs)
    assert found["stray"] == [] and found["pointing"] == []
    return found["text"]


def test_hostile_texts_in_annotate_and_gallery_stay_text_in_chromium(tmp_path, log_in_browser):
    from playwright.sync_api import expect

    listener = Listener()
    corpus = cases(listener.url)
    data = tmp_path / "data"
    data.mkdir()
    db = open_db(data / "prefloop.db")
    by_pair = {}
    for n in range(0, len(corpus), 3):
        prompt, *answers = [c["text"] for c in corpus[n:n + 3]]
        answers = (answers + [f"plain answer {n}", f"plain answer {n}b"])[:2]
        by_pair[add_pair(db, prompt=prompt, completions=tuple(answers))] = corpus[n:n + 3]
    for case in corpus[:6]:
        pin_example(db, case["text"])
    cfg, demo, queue = start_app(data, ready=0)
    seen = set()
    try:
        page = log_in_browser(cfg.port, "alice")
        for n in range(len(by_pair)):
            expect(page.get_by_text(f"you have judged {n} pair")).to_be_visible(timeout=30_000)
            expect(page.locator("#completion-a .untrusted")).to_be_visible()
            shown = check_page(page, listener)
            for case in by_pair[int(page.get_by_label("Pair").input_value())]:
                assert any(case["shows"] in t for t in shown), case["name"]  # still readable
                seen.add(case["name"])
            page.locator("#btn-bad").click()  # an overlay would swallow this click
        expect(page.get_by_text(f"you have judged {len(by_pair)} pairs")).to_be_visible(timeout=30_000)

        page.get_by_role("tab", name="Compare").click()
        page.get_by_text("Demo gallery").click()
        expect(page.locator("#gallery h3").first).to_be_visible(timeout=30_000)
        shown = check_page(page, listener)
        assert len(page.locator("#gallery h3").all()) == 6
        assert all(any(c["shows"] in t for t in shown) for c in corpus[:6])
        page.wait_for_timeout(1000)  # give a late image or refresh its chance to fire
    finally:
        queue.stop()
        demo.close()
        listener.shutdown()
    assert listener.paths == []
    assert seen == {c["name"] for c in corpus}
    votes = open_db(cfg.db_path).execute("SELECT count(*) FROM votes").fetchone()[0]
    assert votes == len(by_pair)
