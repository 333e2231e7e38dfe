"""The Annotators tab, for admins: how much each pair is overlapped, gold pairs, and the
agreement and quality figures that tell a careless annotator from a hard pair.

Shown only to admin accounts; every action and every read checks the role on the database.
"""
from dataclasses import asdict

import gradio as gr
import pandas as pd

from storage import agreement, inputs, queries
from storage.db import thread_db

from .admin import Admin, as_frame
from .plots import bars
from .render import refusal, text_box, text_html

PLOTTED = {"majority_agreement": "Agreement with the majority", "gold_accuracy": "Gold accuracy",
           "left_picks": "Share of picks on the left (0.5: no side bias)"}
# The expected verdict as an admin picks it, on the pair's stored answers.
EXPECTED = {"Answer 1 is better": "0", "Answer 2 is better": "1", "Tie": "tie", "Both bad": "both_bad"}


class Annotators:
    def __init__(self, admin: Admin):
        self.admin = admin

    def _db(self):
        return thread_db(self.admin.db_path)

    def set_assignment(self, overlap: int, gold_rate: float, request: gr.Request) -> str:
        """How many different annotators judge each pair (1-10), and the share of shown pairs
        that are gold pairs (0-0.5); both count from the next pair shown."""
        self.admin.require_admin(request)
        try:
            k, rate = queries.set_assignment(self._db(), overlap, gold_rate)
        except inputs.InputError as e:
            raise refusal(e) from None
        return f"Each pair goes to {k} annotator{'s' * (k > 1)}; {rate:.0%} of pairs shown are gold."

    def set_second_pass(self, mode: str, audit_share: float, confidence: float, request: gr.Request) -> str:
        """How people's judgements follow the judges' first pass: mode off, route or review, the
        share of pairs shown as blind audits (0.05-0.5), and how sure a judge must be to label a
        pair alone in route mode (0.5-1); all count from the next pair shown."""
        self.admin.require_admin(request)
        try:
            second = queries.set_second_pass(self._db(), mode, audit_share, confidence)
        except inputs.InputError as e:
            raise refusal(e) from None
        return agreement.SECOND_PASS_LINES[second.mode].format(**asdict(second))

    def mark_gold(self, pair_id: int, expected: str, request: gr.Request) -> str:
        """Make a pair a gold pair: expected is 0 (its first stored answer is better), 1, tie
        or both_bad. Its votes then measure annotators and never train a round."""
        who = self.admin.require_admin(request)
        try:
            queries.mark_gold(self._db(), pair_id, expected, by=who)
        except inputs.InputError as e:
            raise refusal(e) from None
        return f"Pair {int(pair_id)} is a gold pair."

    def quality(self, request: gr.Request) -> dict:
        """Agreement (Krippendorff's alpha) overall, by prompt category and by policy version,
        and each annotator's figures; see `storage.agreement.quality`."""
        self.admin.require_admin(request)
        return agreement.quality(self._db())

    def pair(self, pair_id: int, request: gr.Request) -> tuple[str, str, str]:
        self.admin.require_admin(request)
        try:
            p = queries.get_pair(self._db(), pair_id)
        except inputs.InputError as e:
            raise refusal(e) from None
        return text_html(p["prompt"]), text_html(p["completion_0"]), text_html(p["completion_1"])


def annotators_tab(demo: gr.Blocks, annotators: Annotators) -> gr.Tab:
    with gr.Tab("Annotators", visible=False) as tab:
        summary = gr.Markdown()
        table = gr.Dataframe(label="Per annotator: judgements, skips, median seconds on task, agreement "
                             "with the majority, gold accuracy, share of ties and both-bad, "
                             "share of decisive picks on the left (0.5: no side bias)",
                             interactive=False, wrap=True)
        with gr.Row():
            plots = [gr.Plot(show_label=False, min_width=240, elem_classes="chart") for _ in PLOTTED]
        refresh = gr.Button("Refresh")
        with gr.Accordion("Assignment", open=False):
            with gr.Row():
                overlap = gr.Number(label="Annotators per pair", precision=0, minimum=1,
                                    maximum=queries.MAX_OVERLAP)
                gold_rate = gr.Number(label="Share of gold pairs shown", minimum=0,
                                      maximum=queries.MAX_GOLD_RATE, step=0.05)
                save = gr.Button("Save", variant="primary")
        with gr.Accordion("Second pass: people after the judges", open=False):
            gr.Markdown("**off**: people judge every pair, oldest first. **route**: a judge's verdict at least "
                        "this sure labels its pair; people get the pairs the judges are least sure of first. "
                        "**review**: people see the surest judge's suggestion and confirm or overturn it. "
                        "In both, a share of pairs shown are drawn at random and shown without a suggestion: "
                        "those blind votes measure the judges.")
            with gr.Row():
                mode = gr.Radio(list(queries.SECOND_PASS_MODES), label="Mode", elem_id="second-pass-mode")
                audit_share = gr.Number(label="Share of blind audits", minimum=queries.AUDIT_SHARES[0],
                                        maximum=queries.AUDIT_SHARES[1], step=0.05)
                confidence = gr.Number(label="Route: how sure a judge must be", minimum=0.5, maximum=1.0, step=0.05)
                save_second_pass = gr.Button("Save", variant="primary", elem_id="second-pass-save")
        with gr.Accordion("Gold pairs", open=False):
            with gr.Row():
                pair_id = gr.Number(label="Pair", precision=0, minimum=1, elem_id="gold-pair")
                show = gr.Button("Show the pair")
            prompt = text_box(label="Prompt", container=True, show_label=True)
            with gr.Row():
                first = text_box(label="Answer 1", container=True, show_label=True)
                second = text_box(label="Answer 2", container=True, show_label=True)
            expected = gr.Radio(list(EXPECTED), label="Expected verdict")
            mark = gr.Button("Mark as a gold pair", variant="primary")
        done = gr.Markdown()

    def view(request: gr.Request):
        if not annotators.admin.is_admin(request):
            return gr.Tab(visible=False), "", None, *[None] * len(PLOTTED), None, None, None, None, None
        q = annotators.quality(request)
        figures = [bars(pd.DataFrame([{"annotator": row["annotator"], key: row[key]} for row in q["annotators"]
                                      if row[key] is not None], columns=["annotator", key]),
                        "annotator", key, label, y_title="share", shares=True, empty="no figures yet")
                   for key, label in PLOTTED.items()]
        return (gr.Tab(visible=True), agreement.summary_markdown(q), as_frame(q["annotators"]),
                *figures, q["overlap"], q["gold_rate"], *(q["second_pass"][k] for k in ("mode", "audit_share", "confidence")))

    def save_it(k, rate, request: gr.Request) -> str:
        return annotators.set_assignment(k, rate, request)

    def mark_it(pid, verdict, request: gr.Request) -> str:
        if verdict not in EXPECTED:
            raise gr.Error("pick the expected verdict first")
        return annotators.mark_gold(pid, EXPECTED[verdict], request)

    outputs = [tab, summary, table, *plots, overlap, gold_rate, mode, audit_share, confidence]
    private = {"api_visibility": "private"}
    demo.load(view, None, outputs, **private)
    refresh.click(view, None, outputs, **private)
    save.click(save_it, [overlap, gold_rate], done, **private).success(view, None, outputs, **private)
    def save_second(m, share, sure, request: gr.Request) -> str:  # its own name: the API's is set_second_pass
        return annotators.set_second_pass(m, share, sure, request)

    save_second_pass.click(save_second, [mode, audit_share, confidence], done, **private).success(
        view, None, outputs, **private)
    show.click(annotators.pair, [pair_id], [prompt, first, second], **private)
    mark.click(mark_it, [pair_id, expected], done, **private).success(view, None, outputs, **private)
    return tab
