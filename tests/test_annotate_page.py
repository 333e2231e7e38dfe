"""What an annotator sees on the Annotate tab, in Chromium: the pair on screen survives a reload,
nothing can be clicked before a pair is there, and score mode stores what the sliders say."""
import threading

import pytest

from storage.db import open_db

from .conftest import add_pair, start_app


@pytest.fixture
def held_generation(tmp_path):
    """An app with no pairs in stock whose model writes only when the test lets it."""
    (tmp_path / "data").mkdir()
    cfg, demo, queue = start_app(tmp_path / "data", ready=0)
    gate, sample = threading.Event(), queue.registry.sample_pairs

    def held(*args, **kwargs):
        assert gate.wait(120), "the test never let the model write"
        return sample(*args, **kwargs)
    queue.registry.sample_pairs = held
    yield cfg, gate
    gate.set()
    queue.stop()
    demo.close()


def shown_prompt(page) -> str:
    return page.locator("#prompt").inner_text().strip()


def test_buttons_wait_for_the_pair_and_the_page_says_what_it_is_preparing(held_generation, log_in_browser, tmp_path):
    from playwright.sync_api import expect

    cfg, gate = held_generation
    page = log_in_browser(cfg.port, "alice")
    status = page.locator("#pair-status")
    expect(status).to_contain_text("Preparing your next pair. No pair is ready yet", timeout=30_000)
    buttons = [page.locator(f"#{b}") for b in ("btn-a", "btn-b", "btn-tie", "btn-bad", "btn-skip")]
    for button in buttons:
        expect(button).to_be_disabled()
    page.keyboard.press("1")  # a shortcut must not get around it either
    page.wait_for_timeout(1500)
    page.screenshot(path=str(tmp_path / "preparing.png"), full_page=True)
    expect(page.locator("#saved")).to_be_empty()
    expect(page.locator("#btn-a")).to_be_disabled()
    assert open_db(cfg.db_path)["votes"].count == 0

    gate.set()
    for button in buttons:
        expect(button).to_be_enabled(timeout=60_000)
    expect(status).to_be_empty()
    first = shown_prompt(page)
    page.locator("#btn-a").click()
    expect(page.locator("#saved")).to_contain_text("Saved vote #1: A is better.", timeout=30_000)
    expect(page.locator("#prompt")).not_to_have_text(first, timeout=60_000)
    expect(page.locator("#btn-b")).to_be_enabled(timeout=60_000)
    assert [v["choice"] for v in open_db(cfg.db_path).query("SELECT choice FROM votes")] == ["a"]


def test_a_pair_that_cannot_be_made_says_why_and_try_again_gets_one(tmp_path, log_in_browser):
    from playwright.sync_api import expect

    (tmp_path / "data").mkdir()
    cfg, demo, queue = start_app(tmp_path / "data", ready=0)
    broken, sample = [True], queue.registry.sample_pairs

    def flaky(*args, **kwargs):
        if broken[0]:
            raise RuntimeError("the model is out to lunch")
        return sample(*args, **kwargs)
    queue.registry.sample_pairs = flaky
    try:
        page = log_in_browser(cfg.port, "alice")
        expect(page.locator("#pair-status")).to_contain_text(
            "No pair to show: no pair could be made: the model is out to lunch", timeout=60_000)
        expect(page.locator("#btn-a")).to_be_disabled()
        retry = page.locator("#btn-retry")
        expect(retry).to_be_visible()
        page.screenshot(path=str(tmp_path / "no-pair.png"), full_page=True)
        broken[0] = False
        retry.click()
        expect(page.locator("#btn-a")).to_be_enabled(timeout=60_000)
        expect(retry).to_be_hidden()
        expect(page.locator("#pair-status")).to_be_empty()
        claimed = next(open_db(cfg.db_path).query(
            "SELECT pr.text FROM shows s JOIN pairs p ON p.id = s.pair_id JOIN prompts pr ON pr.id = p.prompt_id "
            "WHERE s.annotator = 'alice'"))["text"]
        # The page renders the prompt's Markdown: `code` shows without its backticks (3 shipped prompts).
        expect(page.locator("#prompt")).to_contain_text(claimed.replace("`", ""))
    finally:
        queue.stop()
        demo.close()


def test_a_reload_shows_the_same_pair_again(tmp_path, log_in_browser):
    from playwright.sync_api import expect

    db = open_db(tmp_path / "data" / "prefloop.db")
    for n in range(3):
        add_pair(db, prompt=f"Question number {n}?", completions=(f"Answer {n} one", f"Answer {n} two"))
    cfg, demo, queue = start_app(tmp_path / "data", ready=0)
    try:
        page = log_in_browser(cfg.port, "bob")
        expect(page.locator("#btn-a")).to_be_enabled(timeout=30_000)
        first = shown_prompt(page)
        for _ in range(2):
            page.reload()
            expect(page.locator("#btn-a")).to_be_enabled(timeout=30_000)
            assert shown_prompt(page) == first
        page.screenshot(path=str(tmp_path / "reloaded.png"), full_page=True)
        shows = list(db.query("SELECT pair_id FROM shows WHERE annotator = 'bob'"))
        assert len(shows) == 1  # nothing abandoned: one pair claimed, shown three times
        page.locator("#btn-b").click()
        expect(page.locator("#saved")).to_contain_text("Saved vote", timeout=30_000)
        expect(page.locator("#prompt")).not_to_have_text(first, timeout=30_000)
    finally:
        queue.stop()
        demo.close()


@pytest.fixture
def score_app(tmp_path):
    db = open_db(tmp_path / "data" / "prefloop.db")
    for n in range(4):
        add_pair(db, prompt=f"Score question {n}?", completions=(f"First answer {n}", f"Second answer {n}"))
    cfg, demo, queue = start_app(tmp_path / "data", ready=0, mode="score")
    yield cfg
    queue.stop()
    demo.close()


def set_slider(page, side: str, value: int) -> None:
    """As an annotator does it: click the slider's number box, type, leave it."""
    box = page.locator(f"#score-{side} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def last_vote(cfg) -> dict:
    return next(open_db(cfg.db_path).query("SELECT * FROM votes ORDER BY id DESC LIMIT 1"), None)


def test_score_mode_stores_exactly_what_the_sliders_say(score_app, log_in_browser, tmp_path):
    from playwright.sync_api import expect

    cfg = score_app
    page = log_in_browser(cfg.port, "carol")
    expect(page.locator("#btn-scores")).to_be_enabled(timeout=30_000)
    for hidden in ("btn-a", "btn-b", "btn-tie"):  # a pick the sliders could contradict
        expect(page.locator(f"#{hidden}")).to_be_hidden()
    expect(page.get_by_text("Enter submits")).to_be_visible()

    page.locator("#btn-scores").click()  # untouched: refused, nothing stored
    expect(page.get_by_text("Score both answers before submitting: A and B are not scored yet")).to_be_visible(timeout=30_000)
    assert last_vote(cfg) is None

    set_slider(page, "b", 3)
    page.locator("#btn-scores").click()  # one slider moved: still refused
    expect(page.get_by_text("A is not scored yet")).to_be_visible(timeout=30_000)
    assert last_vote(cfg) is None

    set_slider(page, "a", 8)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("Enter")  # score mode's own shortcut
    expect(page.locator("#saved")).to_contain_text("Saved vote #1: A is better (A 8, B 3).", timeout=30_000)
    vote = last_vote(cfg)
    assert (vote["choice"], vote["score_a"], vote["score_b"]) == ("a", 8, 3)
    page.screenshot(path=str(tmp_path / "score-mode.png"), full_page=True)

    # The next pair: the old "Saved vote" line goes as soon as a new verdict is sent, so a
    # refusal is never shown beside it.
    expect(page.locator("#btn-scores")).to_be_enabled(timeout=30_000)
    set_slider(page, "a", 6)
    page.locator("#btn-scores").click()
    expect(page.get_by_text("B is not scored yet")).to_be_visible(timeout=30_000)
    expect(page.locator("#saved")).not_to_contain_text("Saved vote")

    set_slider(page, "b", 6)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("4")  # both bad, with the scores the annotator gave
    expect(page.locator("#saved")).to_contain_text("Saved vote #2: Both bad (A 6, B 6).", timeout=30_000)
    vote = last_vote(cfg)
    assert (vote["choice"], vote["score_a"], vote["score_b"]) == ("both_bad", 6, 6)
    assert open_db(cfg.db_path)["votes"].count == 2
