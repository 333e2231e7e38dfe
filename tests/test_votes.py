import pytest

from storage import queries
from storage.inputs import InputError

from .conftest import add_pair, show


def votes(db):
    return list(db["votes"].rows)


def test_vote_is_stored_with_who_what_and_order(db):
    pair_id = add_pair(db)
    shown = show(db)
    vote_id = queries.record_vote(db, "alice", pair_id, "b", 3, 8, "  B answers the question  ")
    [row] = votes(db)
    assert row["id"] == vote_id
    assert (row["annotator"], row["choice"], row["score_a"], row["score_b"]) == ("alice", "b", 3, 8)
    assert row["rationale"] == "B answers the question"
    assert row["shown_order"] in ("01", "10") and row["seconds_on_task"] >= 0
    pair = db["pairs"].get(pair_id)
    assert shown["a"] == pair[f"completion_{row['shown_order'][0]}"]


def test_double_submission_stores_one_vote(db):
    pair_id = add_pair(db)
    show(db)
    first = queries.record_vote(db, "alice", pair_id, "a", 7, 2)
    second = queries.record_vote(db, "alice", pair_id, "a", 7.0, 2)
    assert first == second and len(votes(db)) == 1


def test_changed_second_vote_is_refused_and_first_stands(db):
    pair_id = add_pair(db)
    show(db)
    queries.record_vote(db, "alice", pair_id, "a")
    with pytest.raises(queries.VoteError, match="already judged"):
        queries.record_vote(db, "alice", pair_id, "b")
    assert [v["choice"] for v in votes(db)] == ["a"]


@pytest.mark.parametrize("pair_id, message", [(999, "unknown pair"), ("abc", "must be a whole number")])
def test_unknown_pair_is_refused(db, pair_id, message):
    add_pair(db)
    with pytest.raises(InputError, match=message):
        queries.record_vote(db, "alice", pair_id, "a")
    assert votes(db) == []


def test_pair_not_shown_to_annotator_is_refused(db):
    pair_id = add_pair(db)
    show(db, "alice")
    with pytest.raises(queries.VoteError, match="not shown to you"):
        queries.record_vote(db, "bob", pair_id, "a")
    assert votes(db) == []


@pytest.mark.parametrize("choice, a, b, message", [
    ("best", None, None, "choice must be one of"),
    ("a", 0, None, "score A"),
    ("a", None, 11, "score B"),
    ("a", 5.5, None, "score A"),
    ("a", "seven", None, "score A"),
    ("a", 2, 9, "disagree"),
])
def test_bad_votes_change_nothing(db, choice, a, b, message):
    pair_id = add_pair(db)
    show(db)
    with pytest.raises(InputError, match=message):
        queries.record_vote(db, "alice", pair_id, choice, a, b)
    assert votes(db) == []
    assert queries.record_vote(db, "alice", pair_id, "tie")  # the pair is still open


def test_skipped_pair_cannot_be_voted(db):
    pair_id = add_pair(db)
    show(db)
    queries.skip_pair(db, "alice", pair_id)
    with pytest.raises(queries.VoteError, match="skipped"):
        queries.record_vote(db, "alice", pair_id, "a")


def test_html_in_rationale_is_kept_as_text(db):
    pair_id = add_pair(db)
    show(db)
    queries.record_vote(db, "alice", pair_id, "a", rationale="<script>alert(1)</script>")
    assert votes(db)[0]["rationale"] == "<script>alert(1)</script>"


def test_annotator_count(db):
    for i in range(3):
        add_pair(db, prompt=f"prompt {i}")
    for _ in range(2):
        queries.record_vote(db, "alice", show(db, "alice")["pair_id"], "a")
    queries.record_vote(db, "bob", show(db, "bob")["pair_id"], "b")
    assert queries.annotator_progress(db, "alice")["total"] == 2
    assert queries.stats(db)["votes_by_annotator"] == {"alice": 2, "bob": 1}


def test_progress_counts_today_the_goal_and_the_last_round(db):
    from storage import rounds
    first, second = add_pair(db, prompt="One?"), add_pair(db, prompt="Two?")
    show(db, "alice")
    used = queries.record_vote(db, "alice", first, "a")
    queries.put_setting(db, "daily_goal", "20")
    round_id = rounds.start_round(db, "dpo", {}, pid=1)
    rounds.set_round_votes(db, round_id, [used])
    rounds.finish_round(db, round_id, 0)
    show(db, "alice")
    queries.record_vote(db, "alice", second, "b")
    assert queries.annotator_progress(db, "alice") == {
        "total": 2, "today": 2, "goal": 20, "last_round": round_id, "in_last_round": 1}
    assert queries.annotator_progress(db, "bob")["in_last_round"] == 0
