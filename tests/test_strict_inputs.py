"""Ids, scores and seeds from API clients are whole numbers SQLite can hold, or are refused with
a plain message and nothing stored: 3.7 never votes on pair 3, and True is never a score of 1."""
import pytest

from storage.db import open_db

from .conftest import api_client

TOO_BIG = 2**70



def votes_on(live_app, pair_id) -> int:
    return open_db(live_app.db_path).execute(
        "SELECT count(*) FROM votes WHERE pair_id = ?", [pair_id]).fetchone()[0]


def refused(call, *args, match: str, api_name: str) -> str:
    with pytest.raises(Exception, match=match) as caught:
        call.predict(*args, api_name=api_name)
    text = str(caught.value)
    assert "Traceback" not in text and "Overflow" not in text and "int()" not in text
    return text


@pytest.fixture(scope="module")
def bob(live_app):
    return api_client(live_app, "bob")


@pytest.mark.parametrize("bad_id", [0.5, 1.7, True, TOO_BIG, -1, "3; DROP TABLE votes", None])
def test_a_pair_id_that_is_not_a_whole_number_votes_on_nothing(live_app, bob, bad_id):
    pair_id, *_ = bob.predict(api_name="/next_pair")
    sent = pair_id + bad_id if isinstance(bad_id, float) else bad_id
    refused(bob, sent, "a", None, None, "", match="the pair id must be a whole number",
            api_name="/vote")
    if bad_id is not None:  # skipping with no pair shown is a no-op
        refused(bob, sent, match="the pair id must be a whole number", api_name="/skip")
    assert votes_on(live_app, pair_id) == 0
    assert bob.predict(api_name="/next_pair")[0] == pair_id  # still shown, still to judge


@pytest.mark.parametrize("score", [True, 7.5, TOO_BIG, "ten"])
def test_a_score_must_be_a_whole_number_from_1_to_10(live_app, bob, score):
    pair_id, *_ = bob.predict(api_name="/next_pair")
    refused(bob, pair_id, "a", score, None, "", match="score A must be a whole number from 1 to 10",
            api_name="/vote")
    assert votes_on(live_app, pair_id) == 0


def test_a_whole_number_sent_as_text_or_float_is_taken(live_app, bob):
    pair_id, *_ = bob.predict(api_name="/next_pair")
    vote_id = bob.predict(float(pair_id), "a", "8", 3.0, "", api_name="/vote")
    row = open_db(live_app.db_path)["votes"].get(vote_id)
    assert (row["pair_id"], row["score_a"], row["score_b"]) == (pair_id, 8, 3)


@pytest.mark.parametrize("seed, version", [(1.5, 0), (TOO_BIG, 0), (-1, 0), (0, 0.5), (0, TOO_BIG)])
def test_compare_refuses_seeds_and_versions_that_are_not_whole(live_app, bob, seed, version):
    db = open_db(live_app.db_path)
    before = db["comparisons"].count if db["comparisons"].exists() else 0
    refused(bob, "Name a colour.", 0, version, seed, False, match="must be a whole number",
            api_name="/compare")
    assert (db["comparisons"].count if db["comparisons"].exists() else 0) == before


def test_promote_refuses_a_version_that_is_not_whole(live_app):
    root = api_client(live_app, "root")
    refused(root, 0.5, match="the version must be a whole number", api_name="/promote")
    refused(root, TOO_BIG, match="the version must be a whole number", api_name="/promote")


@pytest.mark.parametrize("rationale", [42, ["list"], {"a": 1}, "x" * 5001])
def test_a_rationale_must_be_text_of_at_most_5000_characters(live_app, bob, rationale):
    pair_id, *_ = bob.predict(api_name="/next_pair")
    refused(bob, pair_id, "a", None, None, rationale, match="the rationale (must be text|is longer)",
            api_name="/vote")
    assert votes_on(live_app, pair_id) == 0


def test_a_message_quoting_what_was_sent_is_never_html(live_app, bob):
    pair_id, *_ = bob.predict(api_name="/next_pair")
    text = refused(bob, pair_id, '<img src=x onerror="alert(1)">', None, None, "",
                   match="choice must be one of", api_name="/vote")
    assert "<img" not in text and "&lt;img" in text
