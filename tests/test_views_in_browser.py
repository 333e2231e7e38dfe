"""Compare and Leaderboard as people see them in Chromium: a blind comparison hides the versions
and is not a replay of the open one; every Leaderboard plot draws its data from the first round."""
import io

import pytest

from storage import evaluations, queries, rounds
from storage.db import open_db

from .conftest import add_pair, random_adapter, start_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    add_pair(open_db(data / "prefloop.db"))
    cfg, demo, queue = start_app(data, ready=0)
    yield cfg
    queue.stop()
    demo.close()


def answers(page) -> tuple[str, str]:
    return page.locator("#compare-a").inner_text().strip(), page.locator("#compare-b").inner_text().strip()


def test_a_blind_comparison_hides_the_versions_and_draws_a_new_seed(app, log_in_browser, tmp_path):
    from playwright.sync_api import expect

    page = log_in_browser(app.port, "alice")
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#version-b input")).to_have_value("v0 · base · live", timeout=30_000)
    page.locator("#compare-prompt textarea").fill("Tell me about rivers.")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_text("Version 0").first).to_be_visible(timeout=60_000)
    opened = answers(page)
    assert all(opened)

    page.locator("#blind input").check()
    expect(page.locator("#version-a")).to_be_hidden()
    expect(page.locator("#version-b")).to_be_hidden()
    expect(page.get_by_role("button", name="Re-sample (new seed)")).to_be_hidden()
    assert answers(page) == ("", "")  # the open answers, labelled with versions, are gone
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_text("Which answer is better?")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Version 0")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "blind.png"), full_page=True)
    blind = answers(page)
    assert set(blind) != set(opened)

    db = open_db(app.db_path)
    open_row, blind_row = db.query("SELECT seed, blind FROM comparisons ORDER BY id")
    assert (open_row["seed"], open_row["blind"]) == (0, 0)
    assert blind_row["blind"] == 1 and blind_row["seed"] != 0
    page.get_by_role("button", name="A is better").click()
    expect(page.get_by_text("A was version")).to_be_visible(timeout=30_000)


def finished_round(db, adapter, n: int) -> int:
    """A round as the trainer records one: its version, its figures, the reward model's verdicts."""
    round_id = rounds.start_round(db, "dpo", {}, pid=0)
    version = rounds.add_version(db, parent_id=queries.live_version_id(db), adapter_path=str(adapter),
                                 algo="dpo", round_id=round_id)
    rounds.add_metrics(db, {"rm_accuracy": 0.6 + 0.05 * n, "rm_win_rate_vs_base": 0.5 + 0.1 * n,
                            "kl_to_ref": 1.5 * n, "rm_score": 0.2 * n}, round_id=round_id, version_id=version)
    evaluations.add_model_judgements(db, round_id, [
        {"prompt": "p", "version_a": version, "version_b": 0, "completion_a": "x", "completion_b": "y",
         "score_a": 1.0, "score_b": 0.0, "result": "a"}] * 3, sampling={}, seed=0)
    rounds.finish_round(db, round_id, version)
    return version


def drawn_pixels(png: bytes) -> tuple[int, int]:
    """(coloured, inked) pixels in a chart's screenshot: marks are coloured; axes, text and the
    'nothing yet' message are grey or black, and a chart with one line has no legend."""
    from PIL import Image
    pixels = list(Image.open(io.BytesIO(png)).convert("RGB").getdata())
    return sum(max(p) - min(p) > 80 for p in pixels), sum(max(p) < 200 for p in pixels)


PLOTS = ("accuracy", "win-rate", "kl", "reward", "scores", "per-day", "per-annotator")


def plot_marks(page, shots, label: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per plot: coloured pixels (marks) and dark ones (any text or mark drawn at all)."""
    page.get_by_role("tab", name="Leaderboard").click()
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_timeout(1500)  # Vega draws after the data arrives
    page.screenshot(path=str(shots / f"leaderboard-{label}.png"), full_page=True)
    marks, inked = {}, {}
    for name in PLOTS:
        chart = page.locator(f"#plot-{name} canvas").first
        chart.wait_for(timeout=30_000)
        marks[name], inked[name] = drawn_pixels(chart.screenshot())
    return marks, inked


def test_every_leaderboard_plot_draws_its_data_with_one_round_and_with_three(tmp_path, log_in_browser):
    from playwright.sync_api import expect

    data = tmp_path / "data"
    db = open_db(data / "prefloop.db")
    add_pair(db)
    cfg, demo, queue = start_app(data, ready=0)
    try:
        page = log_in_browser(cfg.port, "bob")
        expect(page.locator("#btn-a")).to_be_enabled(timeout=30_000)
        empty, inked = plot_marks(page, tmp_path, "empty")
        assert all(inked.values()), inked  # each chart is drawn: its message says why it is empty
        assert not any(empty.values()), empty  # nothing to draw: a message, not marks

        page.get_by_role("tab", name="Annotate").click()
        page.locator("#score-a input[type=number]").fill("7")
        page.locator("#score-a input[type=number]").press("Tab")
        page.locator("#btn-a").click()
        expect(page.locator("#saved")).to_contain_text("Saved vote", timeout=30_000)
        adapter = random_adapter(tmp_path / "adapter")
        finished_round(db, adapter, 1)
        one, _ = plot_marks(page, tmp_path, "one-round")
        assert all(n > 20 for n in one.values()), one

        for n in (2, 3):
            finished_round(db, adapter, n)
        three, _ = plot_marks(page, tmp_path, "three-rounds")
        for name in ("accuracy", "win-rate", "kl", "reward"):  # three points and the lines between them
            assert three[name] > 2 * one[name], (name, one, three)
        text = page.locator("body").inner_text()
        assert "23.000000" not in text and "too few votes for an interval (3 of 10)" in text
    finally:
        queue.stop()
        demo.close()
