"""The Compare tab: two versions answer one prompt side by side, openly or blind.

Both sides use the same sampling settings and seed, so the difference is the policy's. In
blind mode the sides are shuffled, the seed is drawn afresh (a blind vote right after an open
comparison must not see the same answers again) and the versions are named only after the
viewer votes; those votes are evaluation votes, kept apart from training data.
"""
import random
import tempfile
from pathlib import Path

import gradio as gr

from policy.remote import AdapterRefused
from policy.sampling import SamplingConfig
from storage import evaluations, inputs, queries, rounds
from storage.db import thread_db

from .annotate import CHOICE_LABELS
from .pair_queue import PairQueue
from .render import gallery_html, refusal, text_box, text_html
from .users import logged_in

DEMO_PROMPTS = Path(__file__).resolve().parent.parent / "assets" / "demo_prompts.txt"


class Compare:
    def __init__(self, db_path: Path, queue: PairQueue, sampling: SamplingConfig,
                 rng: random.Random | None = None):
        self.db_path, self.queue, self.sampling = db_path, queue, sampling
        self.rng = rng or random.Random()

    def prompt_choices(self) -> list[str]:
        curated = [line.strip() for line in DEMO_PROMPTS.read_text().splitlines() if line.strip()]
        return curated + evaluations.heldout_prompts(thread_db(self.db_path))

    def version_choices(self) -> list[tuple[str, int]]:
        db = thread_db(self.db_path)
        live = queries.live_version_id(db)
        return [(f"v{r['version']} · {r['algo']}{' · live' if r['version'] == live else ''}",
                 r["version"]) for r in rounds.versions_table(db)]

    def _answer(self, version_id: int, prompt: str, seed: int) -> str:
        self.queue.load_version(version_id)
        return self.queue.registry.complete(version_id, [prompt], self.sampling, seed)[0][0].text

    def compare(self, prompt: str, version_a: int, version_b: int, seed: int, blind: bool,
                request: gr.Request) -> tuple[int, str, str]:
        """Answers from two versions with the same settings and seed:
        (comparison id, left answer, right answer). Blind mode shuffles the sides and draws its
        own seed, ignoring `seed`."""
        user = logged_in(request)
        db = thread_db(self.db_path)
        try:
            prompt = inputs.checked_text("the prompt", prompt, queries.MAX_PROMPT_CHARS)
            if not prompt:
                raise inputs.InputError("type a prompt or pick one")
            if version_a is None or version_b is None:
                raise inputs.InputError("pick the two versions to compare")
            versions = [rounds.get_version(db, inputs.whole_number("a version", v, low=0))["id"]
                        for v in (version_a, version_b)]
            seed = self.rng.randrange(2**31) if blind else inputs.whole_number("the seed", seed, 0, 2**32 - 1)
        except (inputs.InputError, rounds.PromotionError) as e:
            raise refusal(e) from None
        if blind and self.rng.random() < 0.5:
            versions.reverse()
        try:
            answers = [self._answer(v, prompt, seed) for v in versions]
        except AdapterRefused as e:  # an IA3 version on vLLM
            raise refusal(e) from None
        comparison_id = evaluations.add_comparison(
            db, prompt=prompt, version_a=versions[0], version_b=versions[1], completion_a=answers[0],
            completion_b=answers[1], sampling=self.sampling.record(), seed=seed, blind=blind,
            created_by=user)
        return comparison_id, answers[0], answers[1]

    def eval_vote(self, comparison_id: int, result: str, request: gr.Request) -> str:
        """A blind verdict (a, b, tie, both_bad); answers with the versions revealed."""
        db = thread_db(self.db_path)
        try:
            evaluations.record_eval_vote(db, comparison_id, logged_in(request), result)
        except inputs.InputError as e:
            raise refusal(e) from None
        c = evaluations.get_comparison(db, comparison_id)
        return f"Thanks. **A** was version **{c['version_a']}**, **B** was version **{c['version_b']}**."

    def pin(self, comparison_id: int, note: str, request: gr.Request) -> int:
        try:
            return evaluations.pin(thread_db(self.db_path), comparison_id, note, by=logged_in(request))
        except inputs.InputError as e:
            raise refusal(e) from None

    def gallery_view(self) -> str:
        return gallery_html(evaluations.gallery(thread_db(self.db_path)))


def compare_tab(demo: gr.Blocks, compare: Compare) -> None:
    with gr.Tab("Compare"):
        with gr.Row():
            prompt = gr.Textbox(label="Prompt", lines=2, scale=3, max_length=queries.MAX_PROMPT_CHARS,
                                elem_id="compare-prompt")
            pick = gr.Dropdown(label="…or pick a demo / held-out prompt", choices=[], scale=2)
        blind = gr.Checkbox(label="Blind: hide the versions, shuffle the sides, new seed each time, vote",
                            value=False, elem_id="blind")
        # Hidden in blind mode: whoever votes should not know which versions are in play.
        with gr.Row() as open_settings:
            version_a = gr.Dropdown(label="Version A", choices=[], elem_id="version-a")
            version_b = gr.Dropdown(label="Version B", choices=[], elem_id="version-b")
            seed = gr.Number(label="Seed", value=0, precision=0)
        with gr.Row():
            go = gr.Button("Generate", variant="primary")
            resample = gr.Button("Re-sample (new seed)")
        comparison_id = gr.State(None)
        with gr.Row():
            with gr.Column():
                head_a = gr.Markdown("### A")
                answer_a = text_box(container=True, elem_id="compare-a")
            with gr.Column():
                head_b = gr.Markdown("### B")
                answer_b = text_box(container=True, elem_id="compare-b")
        with gr.Row(visible=False) as vote_row:
            votes = {c: gr.Button(label) for c, label in CHOICE_LABELS.items()}
        reveal = gr.Markdown()
        with gr.Accordion("Demo gallery", open=False):
            with gr.Row():
                note = gr.Textbox(label="Note for this example", scale=3, max_length=evaluations.MAX_NOTE_CHARS)
                pin = gr.Button("Pin this comparison", scale=1)
            gallery = text_box(elem_id="gallery")
            download = gr.DownloadButton("Download the gallery as Markdown")

    def refresh_choices():
        versions = compare.version_choices()
        live = queries.live_version_id(thread_db(compare.db_path))
        return (gr.Dropdown(choices=compare.prompt_choices()),
                gr.Dropdown(choices=versions, value=0), gr.Dropdown(choices=versions, value=live),
                compare.gallery_view())

    def run(text, a, b, s, is_blind, request: gr.Request):
        cid, left, right = compare.compare(text, a, b, s, is_blind, request)
        heads = ("### A", "### B") if is_blind else (f"### Version {a}", f"### Version {b}")
        return (cid, *heads, text_html(left), text_html(right), gr.Row(visible=is_blind),
                "Which answer is better?" if is_blind else "")

    def blind_view(on: bool):
        """Switching mode clears the answers on screen: open ones are labelled with versions."""
        return gr.Row(visible=not on), gr.Button(visible=not on), "### A", "### B", "", "", gr.Row(visible=False), ""

    def vote(result):
        def submit(cid, request: gr.Request):
            return compare.eval_vote(cid, result, request), gr.Row(visible=False)
        return submit

    def pin_it(cid, text, request: gr.Request):
        if cid is None:
            raise gr.Error("generate a comparison first")
        compare.pin(cid, text, request)
        return compare.gallery_view(), ""

    def gallery_file():
        folder = Path(tempfile.mkdtemp(prefix="prefloop-gallery-"))
        (folder / "gallery.md").write_text(evaluations.gallery_markdown(thread_db(compare.db_path)))
        return str(folder / "gallery.md")

    outputs = [comparison_id, head_a, head_b, answer_a, answer_b, vote_row, reveal]
    inputs = [prompt, version_a, version_b, seed, blind]
    demo.load(refresh_choices, None, [pick, version_a, version_b, gallery], api_visibility="private")
    blind.change(blind_view, blind, [open_settings, resample, head_a, head_b, answer_a, answer_b,
                                     vote_row, reveal], api_visibility="private")
    pick.change(lambda p: p, pick, prompt, api_visibility="private")
    go.click(run, inputs, outputs, api_visibility="private")
    resample.click(lambda s: int(s or 0) + 1, seed, seed, api_visibility="private").then(
        run, inputs, outputs, api_visibility="private")
    for result, button in votes.items():
        button.click(vote(result), [comparison_id], [reveal, vote_row], api_visibility="private")
    pin.click(pin_it, [comparison_id, note], [gallery, note], api_visibility="private")
    download.click(gallery_file, None, download, api_visibility="private")
