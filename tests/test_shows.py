from storage import queries

from .conftest import add_pair, show


def test_no_pair_is_shown_twice(db):
    ids = {add_pair(db, prompt=f"p{i}") for i in range(4)}
    seen = [show(db, annotator)["pair_id"] for annotator in ["alice", "bob", "alice", "bob"]]
    assert sorted(seen) == sorted(ids)
    assert show(db, "alice") is None and show(db, "carol") is None


def test_ready_count_falls_as_pairs_are_shown(db):
    add_pair(db, prompt="p1")
    add_pair(db, prompt="p2")
    assert queries.ready_pair_count(db, 0) == 2
    show(db)
    assert queries.ready_pair_count(db, 0) == 1


def test_shown_order_is_randomised(db):
    orders = set()
    for i in range(20):
        add_pair(db, prompt=f"p{i}", completions=(f"first {i}", f"second {i}"))
        shown = show(db, seed=i)
        orders.add("01" if shown["a"].startswith("first") else "10")
    assert orders == {"01", "10"}


def test_prompts_needing_pairs_prefers_unanswered(db):
    add_pair(db, prompt="answered")
    queries.add_prompts(db, [{"text": "fresh"}], source="t")
    assert [p["text"] for p in queries.prompts_needing_pairs(db, 0, 1)] == ["fresh"]
