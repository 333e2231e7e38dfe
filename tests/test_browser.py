"""A real browser: Debian's Chromium logs in, reads a pair, votes with a shortcut key."""
import pytest

from storage import guidelines, queries
from storage.db import open_db

from .conftest import add_pair, banana_judgements, start_app

HOSTILE = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> **bold**'


@pytest.fixture(scope="module")
def app_with_hostile_pair(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    # ready=0: nothing is generated ahead, so the hostile pair is the first one served.
    db = open_db(data / "prefloop.db")
    pair_id = add_pair(db, prompt="Render this safely: " + HOSTILE,
                       completions=("Answer one " + HOSTILE, "Answer two, plain"))
    cfg, demo, queue = start_app(data, ready=0)
    yield cfg, pair_id
    queue.stop()
    demo.close()


def test_login_vote_by_keyboard_and_find_the_vote(app_with_hostile_pair, log_in_browser, tmp_path):
    from playwright.sync_api import expect

    cfg, pair_id = app_with_hostile_pair
    queries.put_setting(open_db(cfg.db_path), "daily_goal", "4")  # as the Admin tab sets it
    page = log_in_browser(cfg.port, "alice")
    expect(page.get_by_text("Answer two, plain")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Render this safely:")).to_be_visible()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    expect(page.locator("#completion-a, #completion-b").get_by_text(
        "<script>window.__pwned=2</script>")).to_be_visible()

    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")
    expect(page.get_by_text("Saved vote #")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("you have judged 1 pair · today 1 of your goal of 4 (25%).")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(tmp_path / "annotate.png"), full_page=True)

    votes = list(open_db(cfg.db_path).query("SELECT * FROM votes WHERE pair_id = ?", [pair_id]))
    assert [(v["annotator"], v["choice"]) for v in votes] == [("alice", "a")]
    assert queries.annotator_progress(open_db(cfg.db_path), "alice")["total"] == 1
    assert (tmp_path / "annotate.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def app_with_guidelines(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    db = open_db(data / "prefloop.db")
    first = add_pair(db, prompt="Describe the sea.", completions=("The sea is wide and", "Blue, deep and cold."))
    db.execute("UPDATE pairs SET cut_off_0 = 1 WHERE id = ?", [first])  # as if it ran out of tokens
    add_pair(db, prompt="Name a fruit.", completions=("Rocks.", "A pear."))
    guidelines.save_guideline(db, "Prefer answers that **finish their thought**.", author="root")
    queries.put_setting(db, "daily_goal", "2")
    cfg, demo, queue = start_app(data, ready=0)
    yield cfg
    queue.stop()
    demo.close()


def test_read_the_guidelines_vote_correct_an_answer_and_see_progress(app_with_guidelines, log_in_browser):
    from playwright.sync_api import expect

    cfg = app_with_guidelines
    page = log_in_browser(cfg.port, "alice")
    expect(page.get_by_text("Describe the sea.")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Cut off at the length limit")).to_have_count(1)  # under "The sea is wide and"
    page.get_by_text("Guidelines (version 1)").click()
    expect(page.get_by_text("finish their thought")).to_be_visible()
    page.get_by_role("button", name="B is better [2]").click()  # B may be either answer: see the votes
    expect(page.get_by_text("you have judged 1 pair · today 1 of your goal of 2 (50%).")).to_be_visible(timeout=30_000)

    expect(page.get_by_text("Name a fruit.")).to_be_visible(timeout=30_000)
    page.get_by_text("Write a better answer (optional)").click()
    page.get_by_role("button", name="Start from B").click()
    box = page.locator("#correction textarea")
    expect(box).not_to_have_value("", timeout=10_000)
    started_from = box.input_value()
    box.fill("A pear: ripe, sweet, and in season now.")
    page.get_by_role("button", name="B is better [2]").click()
    expect(page.get_by_text("you have judged 2 pairs · today 2 of your goal of 2 (100%).")).to_be_visible(timeout=30_000)

    db = open_db(cfg.db_path)
    [demo] = db["demonstrations"].rows
    pair = db["pairs"].get(demo["pair_id"])
    assert demo["author"] == "alice" and demo["text"] == "A pear: ripe, sweet, and in season now."
    assert pair[f"completion_{demo['replaced']}"] == started_from  # it replaced answer B as shown
    assert [v["guideline_id"] for v in db["votes"].rows] == [1, 1]


def test_an_admin_sets_the_overlap_and_marks_a_gold_pair_in_the_annotators_tab(app_with_guidelines, log_in_browser):
    from playwright.sync_api import expect

    cfg = app_with_guidelines
    db = open_db(cfg.db_path)
    page = log_in_browser(cfg.port, "root")
    page.get_by_role("tab", name="Annotators").click()
    expect(page.get_by_text("Each pair goes to 1 annotator;")).to_be_visible(timeout=30_000)
    page.get_by_text("Assignment").click()
    overlap = page.get_by_label("Annotators per pair")
    expect(overlap).to_have_value("1", timeout=30_000)  # the tab's figures have filled it: typing now sticks
    overlap.fill("3")
    overlap.press("Tab")
    expect(overlap).to_have_value("3")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Each pair goes to 3 annotators;").first).to_be_visible(timeout=30_000)
    assert queries.overlap(db) == 3
    queries.set_assignment(db, k=1)

    page.get_by_text("Gold pairs", exact=True).click()
    page.locator("#gold-pair input").fill("1")
    page.get_by_role("button", name="Show the pair").click()
    expect(page.get_by_role("tabpanel").get_by_text("Blue, deep and cold.")).to_be_visible(timeout=30_000)
    page.get_by_label("Answer 2 is better").check()
    page.get_by_role("button", name="Mark as a gold pair").click()
    expect(page.get_by_text("Pair 1 is a gold pair.")).to_be_visible(timeout=30_000)
    assert [(g["pair_id"], g["expected"], g["marked_by"]) for g in db["gold_pairs"].rows] == [(1, "1", "root")]
    expect(page.get_by_role("tab", name="Annotators")).to_be_visible()
    alice = log_in_browser(cfg.port, "alice")
    expect(alice.get_by_text("alice, you have judged")).to_be_visible(timeout=30_000)  # the page has loaded
    expect(alice.get_by_text("Krippendorff")).to_have_count(0)
    expect(alice.get_by_role("tab", name="Annotators")).to_have_count(0)


@pytest.fixture
def app_with_judgements(tmp_path):
    """The app on a data directory with 40 judged pairs."""
    cfg, demo, queue = start_app(banana_judgements(tmp_path), ready=0)
    yield cfg
    queue.stop()
    demo.close()


def test_an_admin_follows_a_round_to_the_gates_decision_and_promotes_only_once_confirmed(
        app_with_judgements, log_in_browser, tmp_path):
    import re

    from playwright.sync_api import expect

    cfg = app_with_judgements
    db = open_db(cfg.db_path)
    page = log_in_browser(cfg.port, "root")
    page.get_by_role("tab", name="Admin").click()
    page.get_by_label("dpo", exact=True).check()  # not online-dpo or rs-sft-dpo
    page.get_by_role("button", name="Launch a round").click()
    expect(page.get_by_text("Started round process")).to_be_visible(timeout=30_000)

    status, phases = page.locator("#round-status"), page.locator("#round-phase-table")
    # while it runs (seen at one moment): the phase under way with its steps done of its total and a bar
    page.wait_for_function("""() => {
        const status = document.querySelector('#round-status')?.innerText || '';
        const row = [...document.querySelectorAll('#round-phase-table tbody tr')].pop();
        return status.includes('running') && row && /\\d+\\/\\d+/.test(row.innerText)
            && row.querySelector('progress') !== null && status.includes(row.cells[0].innerText);
    }""", timeout=240_000, polling=100)
    page.screenshot(path=str(tmp_path / "round-running.png"), full_page=True)

    # at the end: the gate's decision in words with its figures, every phase done
    expect(status).to_contain_text(re.compile(r"Version 1 was (not promoted|promoted and is live)"), timeout=300_000)
    expect(status).to_contain_text("reward-model win-rate against live")
    for name in ("snapshot", "reward model: reading answers", "dpo", "evaluate", "register"):
        expect(phases.locator("tr", has_text=name)).to_contain_text("done")
    expect(page.locator("#round-log textarea")).to_have_value(re.compile(r"\[register\] 1/1"))
    expect(phases.locator("tr", has_text="dpo")).to_contain_text("9/9")
    expect(page.locator("#round-loss canvas")).to_be_visible()  # DPO's loss, step by step
    expect(page.locator("#round-figures canvas")).to_be_visible()  # and its reward margin
    assert page.evaluate("""() => { const log = document.querySelector('#round-log textarea');
        return log.scrollHeight > log.clientHeight && log.scrollHeight - log.scrollTop - log.clientHeight < 4; }"""), \
        "the log box shows its newest lines"
    headers = [h.strip() for h in page.locator("#versions thead th").all_inner_texts()]
    assert headers == ["Version", "Parent", "Algorithm", "Round", "Live", "Created (UTC)", "Reward accuracy",
                       "Win-rate vs live", "Win-rate vs base", "KL"], headers
    expect(page.locator("#versions")).not_to_contain_text("rm_win_rate_vs_live_low")
    page.screenshot(path=str(tmp_path / "round-done.png"), full_page=True)

    # promoting asks first, says what will happen, and changes nothing until confirmed
    live = queries.live_version_id(db)
    other = 0 if live == 1 else 1
    page.get_by_label("Version", exact=True).fill(str(other))
    page.get_by_role("button", name="Promote this version").click()
    expect(page.get_by_text(f"Version {other} will become live: annotators get its pairs from their next pair."
                            )).to_be_visible(timeout=30_000)
    assert queries.live_version_id(db) == live
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Nothing changed.")).to_be_visible(timeout=30_000)
    assert queries.live_version_id(db) == live
    page.get_by_role("button", name="Promote this version").click()
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text(f"Version {other} is live.")).to_be_visible(timeout=30_000)
    assert queries.live_version_id(db) == other
    page.wait_for_function("""(version) => {
        const rows = [...document.querySelectorAll('#versions [role=row]')]
            .map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()));
        const live = rows.filter(cells => cells.includes('live')).map(cells => cells[0]);
        return live.length === 1 && live[0] === String(version);
    }""", arg=other, timeout=30_000)  # the Live column moved to the promoted version
    assert (tmp_path / "round-done.png").stat().st_size > 10_000
