"""The Compare tab's endpoints through gradio_client: two versions answer side by side, and
blind votes are stored apart from training data."""
import pytest
from gradio_client import Client

from storage import exports, rounds
from storage.db import open_db

from .conftest import random_adapter


@pytest.fixture(scope="module")
def tuned(live_app, tmp_path_factory):
    adapter = random_adapter(tmp_path_factory.mktemp("adapter") / "v1")
    return rounds.add_version(open_db(live_app.db_path), parent_id=0, adapter_path=str(adapter),
                              algo="dpo")


@pytest.fixture(scope="module")
def bob(live_app):
    return Client(f"http://127.0.0.1:{live_app.port}", auth=("bob", "bob-pw"), verbose=False)


def test_two_versions_answer_the_same_prompt_side_by_side(live_app, bob, tuned):
    cid, left, right = bob.predict("Tell me about rivers.", 0, tuned, 3, False, api_name="/compare")
    assert left and right and left != right
    row = open_db(live_app.db_path)["comparisons"].get(cid)
    assert (row["version_a"], row["version_b"], row["seed"], row["blind"]) == (0, tuned, 3, 0)
    assert (row["completion_a"], row["completion_b"]) == (left, right)
    # the same seed and settings give the same answers again: the difference is the policy's
    _, again, _ = bob.predict("Tell me about rivers.", 0, tuned, 3, False, api_name="/compare")
    assert again == left


def test_blind_vote_reveals_versions_and_stays_out_of_training(live_app, bob, tuned):
    cid, *_ = bob.predict("Tell me about mountains.", 0, tuned, 5, True, api_name="/compare")
    reveal = bob.predict(cid, "b", api_name="/eval_vote")
    db = open_db(live_app.db_path)
    comparison = db["comparisons"].get(cid)
    assert f"version **{comparison['version_a']}**" in reveal
    assert f"version **{comparison['version_b']}**" in reveal
    assert {comparison["version_a"], comparison["version_b"]} == {0, tuned}
    [vote] = db.query("SELECT * FROM eval_votes WHERE comparison_id = ?", [cid])
    assert (vote["annotator"], vote["result"], vote["judge"]) == ("bob", "b", "human")
    assert all(r["annotator"] != "bob" for r in exports.trl_rows(db))


def test_open_comparisons_take_no_votes_and_bad_prompts_are_refused(bob, tuned):
    cid, *_ = bob.predict("Tell me about lakes.", 0, tuned, 1, False, api_name="/compare")
    with pytest.raises(Exception, match="only blind comparisons"):
        bob.predict(cid, "a", api_name="/eval_vote")
    with pytest.raises(Exception, match="type a prompt"):
        bob.predict("   ", 0, tuned, 1, False, api_name="/compare")
    with pytest.raises(Exception, match="longer than"):
        bob.predict("x" * 5000, 0, tuned, 1, False, api_name="/compare")
    with pytest.raises(Exception, match="no policy version 999"):
        bob.predict("Hi", 0, 999, 1, False, api_name="/compare")
    with pytest.raises(Exception, match="pick the two versions"):
        bob.predict("Hi", None, tuned, 1, False, api_name="/compare")
