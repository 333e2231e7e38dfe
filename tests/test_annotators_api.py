"""The Annotators endpoints: admins set the overlap and gold rate, mark gold pairs and read the
figures; annotators can do none of it, and send corrected answers with their votes."""
import pytest

from storage import queries
from storage.db import open_db

from .conftest import api_client


def test_annotators_cannot_change_assignment_mark_gold_or_read_figures(live_app):
    bob = api_client(live_app, "bob")
    for args, api in (((2, 0.1), "/set_assignment"), (("route", 0.2, 0.8), "/set_second_pass"),
                      ((1, "0"), "/mark_gold"), ((), "/annotator_stats")):
        with pytest.raises(Exception, match="only admin accounts"):
            bob.predict(*args, api_name=api)
    db = open_db(live_app.db_path)
    assert queries.overlap(db) == 1 and db["gold_pairs"].count == 0
    assert queries.second_pass(db).mode == "off"


def test_an_admin_sets_the_second_pass(live_app):
    root, db = api_client(live_app, "root"), open_db(live_app.db_path)
    try:
        assert "Second pass: **route**" in root.predict("route", 0.2, 0.9, api_name="/set_second_pass")
        assert queries.second_pass(db) == queries.SecondPass("route", 0.2, 0.9)
        with pytest.raises(Exception, match="must be one of off, route, review"):
            root.predict("auto", 0.2, 0.9, api_name="/set_second_pass")
        assert root.predict(api_name="/annotator_stats")["second_pass"] == {"mode": "route", "audit_share": 0.2,
                                                                             "confidence": 0.9}
    finally:
        queries.set_second_pass(db, "off", 0.15, 0.8)


def test_an_admin_sets_assignment_marks_gold_and_reads_the_figures(live_app):
    root, alice = api_client(live_app, "root"), api_client(live_app, "alice")
    db = open_db(live_app.db_path)
    details = alice.predict(api_name="/next_pair_details")
    assert alice.predict(api_name="/next_pair") == (details["pair_id"], details["prompt"], details["a"], details["b"])
    assert isinstance(details["a_cut_off"], bool) and isinstance(details["b_cut_off"], bool)
    pair_id = details["pair_id"]
    alice.predict(pair_id, "a", None, None, "", "A, but shorter.", "a", api_name="/vote")
    [demo] = [d for d in db["demonstrations"].rows if d["pair_id"] == pair_id]
    assert demo["text"] == "A, but shorter." and demo["author"] == "alice"
    try:
        assert "2 annotators" in root.predict(2, 0.2, api_name="/set_assignment")
        assert (queries.overlap(db), queries.gold_rate(db)) == (2, 0.2)
        with pytest.raises(Exception, match="overlap must be"):
            root.predict(0, 0.2, api_name="/set_assignment")
        assert "gold pair" in root.predict(pair_id, "1", api_name="/mark_gold")
        with pytest.raises(Exception, match="already a gold pair"):
            root.predict(pair_id, "0", api_name="/mark_gold")
        with pytest.raises(Exception, match="expected verdict"):
            root.predict(pair_id, "<b>a</b>", api_name="/mark_gold")
        figures = root.predict(api_name="/annotator_stats")
        alice_row = next(r for r in figures["annotators"] if r["annotator"] == "alice")
        shown_first = db.execute("SELECT shown_order FROM votes WHERE pair_id = ? AND annotator = 'alice'",
                                 [pair_id]).fetchone()[0][0]  # she chose A: this stored answer
        assert alice_row["gold_votes"] == 1 and figures["overlap"] == 2
        assert alice_row["gold_accuracy"] == (1.0 if shown_first == "1" else 0.0)
    finally:
        queries.set_assignment(db, k=1)
        queries.set_assignment(db, rate=0)
