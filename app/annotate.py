"""The Annotate tab and the two functions behind it, which are also the named API endpoints.

`next_pair` and `vote` are exactly what a program calls through `gradio_client`; the
buttons only fix the choice and reset the form.
"""
import logging

import gradio as gr

from storage import guidelines, inputs, queries
from storage.db import thread_db

from .pair_queue import PairQueue
from .render import refusal, text_box, text_html
from .users import logged_in

log = logging.getLogger(__name__)

MODES = ("pick", "score", "both")
CHOICE_LABELS = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
CUT_OFF_NOTE = ('<p class="cut-off">✂ Cut off at the length limit: this answer did not finish. '
                'Judge what is there, not how it ends.</p>')
# Each mode's keys: in score mode the digits would pick a side the sliders may contradict.
SHORTCUTS = {
    "pick": {"1": "btn-a", "2": "btn-b", "3": "btn-tie", "4": "btn-bad", "s": "btn-skip"},
    "score": {"enter": "btn-scores", "4": "btn-bad", "s": "btn-skip"},
}
SHORTCUTS["both"] = SHORTCUTS["pick"]
HELP = {
    "pick": "Shortcuts: **1** A better · **2** B better · **3** tie · **4** both bad · **S** skip "
            "(not while typing in a text box).",
    "score": "Score both answers (click a slider, then the arrow keys move it), then **Enter** submits; "
             "the higher score wins, equal scores are a tie. **4** both bad · **S** skip.",
    "both": "Pick with **1** A better · **2** B better · **3** tie · **4** both bad · **S** skip; "
            "scores are optional, and only a slider you moved is stored.",
}



def shortcut_js(mode: str) -> str:
    """The mode's keys press its buttons, except while typing in a text field or on a button
    (there Enter already presses it)."""
    return _SHORTCUT_JS % str(SHORTCUTS[mode]).replace("'", '"')


_SHORTCUT_JS = """
<script>
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (t.tagName === 'TEXTAREA' || t.tagName === 'BUTTON' || (t.tagName === 'INPUT' && t.type !== 'range')) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const id = %s[e.key.toLowerCase()];
  const button = id && document.getElementById(id);
  if (button) { e.preventDefault(); button.click(); }
});
</script>
"""


def suggestion_line(suggestion: dict | None) -> str:
    """A judge's suggestion in words, on the page's own sides; empty where none is shown."""
    if suggestion is None:
        return ""
    judge = "The reward model" if suggestion["judge"].startswith("reward-model") else "The judge"
    return (f"💡 {judge} prefers **{suggestion['answer'].upper()}** ({suggestion['confidence']:.0%} sure). "
            "Confirm it or overturn it: your verdict is what counts.")


class Annotation:
    def __init__(self, db_path, queue: PairQueue):
        self.db_path, self.queue = db_path, queue

    def claim(self, request: gr.Request) -> dict:
        try:
            return self.queue.next_pair(logged_in(request))
        except LookupError as e:
            raise refusal(e) from None

    def next_pair(self, request: gr.Request) -> tuple[int, str, str, str]:
        """A new pair for the logged-in annotator: (pair id, prompt, completion A, completion B)."""
        pair = self.claim(request)
        return pair["pair_id"], pair["prompt"], pair["a"], pair["b"]

    def next_pair_details(self, request: gr.Request) -> dict:
        """The same pair as `next_pair`, as a dict that also says whether each answer was cut
        off at the length limit (`a_cut_off`, `b_cut_off`), and in review mode the judge's
        `suggestion` ({"answer": "a" or "b", "confidence", "judge"}; None where none is shown)."""
        pair = self.claim(request)
        return {k: pair[k] for k in ("pair_id", "prompt", "a", "b", "a_cut_off", "b_cut_off", "suggestion")}

    def vote(self, pair_id: int, choice: str, score_a: int | None, score_b: int | None,
             rationale: str | None, request: gr.Request, correction: str | None = None,
             corrected: str | None = None) -> int:
        """Judge a pair shown to you: choice is a, b, tie or both_bad; scores 1-10 or empty.
        Optionally a better answer of your own (`correction`), replacing answer `corrected` (a
        or b; the one you chose if empty).

        Returns the stored vote id; sending the same vote again returns the same id.
        """
        try:
            return queries.record_vote(thread_db(self.db_path), logged_in(request), pair_id,
                                       choice, score_a, score_b, rationale, correction, corrected,
                                       self.queue.cfg.claim_seconds)
        except inputs.InputError as e:
            raise refusal(e) from None

    def skip(self, pair_id: int | None, request: gr.Request) -> str:
        """Pass on a pair shown to you; nobody is shown it again."""
        if pair_id is None:
            return "Nothing to skip."
        try:
            queries.skip_pair(thread_db(self.db_path), logged_in(request), pair_id)
        except inputs.InputError as e:
            raise refusal(e) from None
        return f"Skipped pair #{pair_id}."

    def guidelines(self, request: gr.Request) -> tuple[int | None, str]:
        """The annotation guidelines in force: (version, Markdown text); (None, "") before any."""
        logged_in(request)
        current = guidelines.current_guideline(thread_db(self.db_path))
        return (current["id"], current["text"]) if current else (None, "")

    def count_line(self, request: gr.Request) -> str:
        p = queries.annotator_progress(thread_db(self.db_path), logged_in(request))
        line = f"**{request.username}**, you have judged **{p['total']}** pair{'s' * (p['total'] != 1)}"
        if p["goal"]:
            line += f" · today **{p['today']}** of your goal of **{p['goal']}** " \
                    f"({min(100, round(100 * p['today'] / p['goal']))}%)"
        if p["last_round"] is not None:
            line += f" · **{p['in_last_round']}** of them trained round {p['last_round']}"
        return line + "."


def annotate_tab(demo: gr.Blocks, annotation: Annotation, mode: str) -> None:
    """Build the tab inside `demo`; `mode` is pick, score or both."""
    pick, score = mode in ("pick", "both"), mode in ("score", "both")
    count = gr.Markdown()
    with gr.Accordion("Guidelines", open=False) as panel:
        guide = text_box(elem_id="guidelines")
    # Kept on the page for the vote, not shown: a gold pair's old id would give it away.
    pair_id = gr.Number(label="Pair", precision=0, interactive=False, visible="hidden")
    prompt = text_box(label="Prompt", container=True, show_label=True, elem_id="prompt")
    sides = {}
    with gr.Row(equal_height=True):
        for side in "AB":
            with gr.Column():
                sides[side] = text_box(label=side, container=True, show_label=True,
                                       elem_id=f"completion-{side.lower()}")
    with gr.Row(visible=score):
        score_a = gr.Slider(1, 10, value=5, step=1, label="Score A", info="counts once you move it",
                            elem_id="score-a")
        score_b = gr.Slider(1, 10, value=5, step=1, label="Score B", info="counts once you move it",
                            elem_id="score-b")
    a, b = sides["A"], sides["B"]
    suggestion = gr.Markdown(elem_id="suggestion")
    rationale = gr.Textbox(label="Rationale (optional)", lines=2, max_length=queries.MAX_RATIONALE_CHARS)
    with gr.Accordion("Write a better answer (optional)", open=False):
        with gr.Row():
            from_a = gr.Button("Start from A", size="sm", elem_id="edit-a")
            from_b = gr.Button("Start from B", size="sm", elem_id="edit-b")
        correction = gr.Textbox(label="Your answer: saved with your verdict, to teach the model by "
                                "example", lines=6, max_length=queries.MAX_CORRECTION_CHARS,
                                elem_id="correction")
    texts, corrected = gr.State(("", "")), gr.State("")  # the answers as sent, and the side edited
    waiting = gr.Markdown("Preparing your first pair…", elem_id="pair-status")
    # Every button starts disabled and is disabled again after each verdict until the next pair
    # is on the page: a click on an old or empty pair would judge what the annotator cannot see.
    with gr.Row():
        buttons = {
            choice: gr.Button(f"{CHOICE_LABELS[choice]} [{key}]", elem_id=elem_id, interactive=False,
                              visible=pick or choice == "both_bad",
                              variant="primary" if choice in ("a", "b") else "secondary")
            for key, elem_id, choice in zip("1234", ("btn-a", "btn-b", "btn-tie", "btn-bad"),
                                            CHOICE_LABELS)
        }
        buttons[None] = gr.Button("Submit scores [Enter]", variant="primary", visible=mode == "score",
                                  interactive=False, elem_id="btn-scores")
        skip = gr.Button("Skip [S]", elem_id="btn-skip", interactive=False)
        retry = gr.Button("Try again", elem_id="btn-retry", visible=False)
    gr.Markdown(HELP[mode])
    saved = gr.Markdown(elem_id="saved")
    controls = [*buttons.values(), skip]
    # Scores count only if the annotator moved the slider; untouched sliders send nothing.
    touched_a, touched_b = gr.State(False), gr.State(False)
    score_a.input(lambda: True, None, touched_a, api_visibility="private")
    score_b.input(lambda: True, None, touched_b, api_visibility="private")

    pair_outputs = [pair_id, prompt, a, b, texts, suggestion]
    reset_outputs = [score_a, score_b, touched_a, touched_b, rationale, correction, corrected]
    all_outputs = pair_outputs + reset_outputs + [count, waiting, *controls, retry]

    def preparing():
        """Said while the next pair is claimed, with the queue's own state, buttons off."""
        return f"Preparing your next pair. {annotation.queue.outlook()}", *[gr.Button(interactive=False)] * len(controls)

    def load_next(request: gr.Request):
        """The next pair with the buttons on; or, if none can be had, an empty page that says
        why, with only Try again to press (the pair on screen was judged already)."""
        try:
            pair = annotation.claim(request)
        except Exception as e:  # a refusal, or the database busy: never a page stuck with no way on
            if not isinstance(e, gr.Error):
                log.exception("could not claim a pair")
            why = e.message if isinstance(e, gr.Error) else "the server could not get one"
            return (None, "", "", "", ("", ""), "", 5, 5, False, False, "", "", "", gr.skip(),
                    f"No pair to show: {why}. Press **Try again**, or reload the page later.",
                    *[gr.Button(interactive=False)] * len(controls), gr.Button(visible=True))
        answers = [text_html(pair[side]) + (CUT_OFF_NOTE if pair[f"{side}_cut_off"] else "") for side in "ab"]
        return (pair["pair_id"], text_html(pair["prompt"]), *answers, (pair["a"], pair["b"]),
                suggestion_line(pair["suggestion"]), 5, 5, False, False, "", "", "", annotation.count_line(request), "",
                *[gr.Button(interactive=True)] * len(controls), gr.Button(visible=False))

    from_a.click(lambda t: (t[0], "a"), [texts], [correction, corrected], api_visibility="private")
    from_b.click(lambda t: (t[1], "b"), [texts], [correction, corrected], api_visibility="private")

    def load_guidelines(request: gr.Request):
        """Read at every page load and vote, so a new version reaches annotators mid-session."""
        version, text = annotation.guidelines(request)
        if version is None:
            return gr.Accordion(label="Guidelines (none yet)"), text_html("No guidelines yet.")
        return gr.Accordion(label=f"Guidelines (version {version})"), text_html(text)

    def make_vote(choice):
        def submit(pid, sa, sb, ta, tb, why, better, side, request: gr.Request):
            if choice is None:  # the scores decide, so both must have been given
                unscored = [name for name, touched in (("A", ta), ("B", tb)) if not touched]
                if unscored:
                    raise gr.Error(f"Score both answers before submitting: {' and '.join(unscored)} "
                                   f"{'is' if len(unscored) == 1 else 'are'} not scored yet (move the slider).")
                pick_ = "a" if sa > sb else "b" if sb > sa else "tie"
            else:
                pick_ = choice
            vote_id = annotation.vote(pid, pick_, sa if ta else None, sb if tb else None, why, request,
                                      better, side)
            scores = f" (A {sa}, B {sb})" if ta and tb else f" (A {sa})" if ta else f" (B {sb})" if tb else ""
            return f"Saved vote #{vote_id}: {CHOICE_LABELS[pick_]}{scores}.", *preparing()
        return submit

    vote_inputs = [pair_id, score_a, score_b, touched_a, touched_b, rationale, correction, corrected]
    quick = {"api_visibility": "private", "concurrency_limit": None}  # see server.build_blocks
    claim = {**quick, "show_progress": "hidden"}  # `waiting` says what is happening instead
    for choice, button in buttons.items():
        # The last verdict's line goes first, in the browser, so a refusal never shows beside an
        # old "Saved".
        voted = button.click(None, None, saved, js="() => ''", **quick).then(
            make_vote(choice), vote_inputs, [saved, waiting, *controls], **quick)
        voted.success(load_next, None, all_outputs, **claim)
        voted.success(load_guidelines, None, [panel, guide], **quick)
    def skip_it(pid, request: gr.Request) -> str:
        annotation.skip(pid, request)
        return "Skipped."  # not its number: a gold pair's id would give it away

    skip.click(skip_it, [pair_id], saved, **quick).success(
        preparing, None, [waiting, *controls], **quick).success(load_next, None, all_outputs, **claim)
    retry.click(preparing, None, [waiting, *controls], **quick).then(load_next, None, all_outputs, **claim)
    demo.load(preparing, None, [waiting, *controls], **quick).then(load_next, None, all_outputs, **claim)
    demo.load(load_guidelines, None, [panel, guide], **quick)
