"""Putting the app together: storage, the policy, the pair queue and the Gradio Blocks."""
import logging
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from policy import models
from policy.registry import PolicyRegistry
from policy.remote import RemotePolicy
from storage import imports, queries
from storage.db import open_db
from storage.paths import data_dir
from trainer.first_pass import LLMJudge, LLMJudgeConfig, RewardModelJudge, every

from . import render, users
from .admin import Admin, admin_tab
from .annotators import Annotators, annotators_tab
from .annotate import MODES, Annotation, annotate_tab, shortcut_js
from .compare import Compare, compare_tab
from .leaderboard import leaderboard_tab
from .pair_queue import PairQueue, QueueConfig

ASSETS = Path(__file__).resolve().parent.parent / "assets"
log = logging.getLogger(__name__)


@dataclass
class AppConfig:
    model: str = "smollm2"
    data_dir: Path = field(default_factory=data_dir)
    host: str = "127.0.0.1"
    port: int = 7860
    mode: str = "both"
    # "local": the app's own process generates, fine for a few annotators; "openai": generation
    # goes to `endpoints` (comma-separated URLs of `python -m policy serve` workers or vLLM).
    sampling_backend: str = "local"
    endpoints: str = ""
    # The newest round's reward model judges every new pair, its verdicts stored apart from the
    # votes (docs/annotation-quality.md); it loads in this process, half the base model, after a round.
    first_pass: bool = True
    # Optionally an LLM judges every new pair as well, asked in both orders (`judge.url`, `judge.model`).
    judge: LLMJudgeConfig = field(default_factory=LLMJudgeConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "prefloop.db"

    @property
    def users_file(self) -> Path:
        return self.data_dir / "users.json"

    @property
    def model_cache(self) -> Path:
        return self.data_dir / "models"


def sampler(cfg: AppConfig) -> PolicyRegistry | RemotePolicy:
    """What makes the answers: the model in this process, or the sampling endpoints."""
    if cfg.sampling_backend == "local":
        return PolicyRegistry.load(cfg.model, cfg.model_cache)
    if cfg.sampling_backend == "openai":
        return RemotePolicy([url.strip() for url in cfg.endpoints.split(",") if url.strip()],
                            models.model_name(cfg.model))
    raise ValueError(f"sampling_backend must be 'local' or 'openai', not {cfg.sampling_backend!r}")


def prepare(cfg: AppConfig) -> tuple[PolicyRegistry | RemotePolicy, PairQueue]:
    """Load the model, make sure the database has version 0 and prompts, start the queue."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    registry = sampler(cfg)
    db = open_db(cfg.db_path)
    queries.ensure_base_version(db, registry.base_model)
    if queries.prompt_count(db) == 0:
        result = imports.import_prompt_file(db, ASSETS / "prompts.jsonl")
        log.info("loaded %d starter prompts", result.added)
    reward_model = RewardModelJudge(cfg.data_dir)  # loads nothing until a round has made one
    judges = [reward_model] * cfg.first_pass + [LLMJudge(cfg.judge)] * bool(cfg.judge.url)
    return registry, PairQueue(cfg.db_path, registry, cfg.queue, judge=every(judges),
                               choose=reward_model.chooser).start()


def build_blocks(cfg: AppConfig, queue: PairQueue) -> gr.Blocks:
    annotation = Annotation(cfg.db_path, queue)
    admin = Admin(cfg.data_dir, cfg.db_path, queue.registry.check_servable)
    compare = Compare(cfg.db_path, queue, cfg.queue.sampling)
    annotators = Annotators(admin)
    with gr.Blocks(title="prefloop") as demo:
        gr.Markdown("# prefloop\nJudge which answer is better. Your judgements train the next model.")
        with gr.Tab("Annotate"):
            annotate_tab(demo, annotation, cfg.mode)
        compare_tab(demo, compare)
        leaderboard_tab(demo, cfg.db_path)
        admin_tab(demo, admin)
        annotators_tab(demo, annotators)
        # Claims and votes are quick reads and writes (a claim waits only on an empty stock), so
        # they never queue behind each other or behind generation in Compare.
        gr.api(annotation.next_pair, api_name="next_pair", concurrency_limit=None)
        gr.api(annotation.next_pair_details, api_name="next_pair_details", concurrency_limit=None)
        gr.api(annotation.vote, api_name="vote", concurrency_limit=None)
        gr.api(annotation.skip, api_name="skip", concurrency_limit=None)
        gr.api(annotation.guidelines, api_name="guidelines", concurrency_limit=None)
        gr.api(compare.compare, api_name="compare")
        gr.api(compare.eval_vote, api_name="eval_vote")
        gr.api(admin.launch_round, api_name="launch_round")
        gr.api(admin.promote, api_name="promote")
        gr.api(admin.rollback, api_name="rollback")
        gr.api(admin.save_guidelines, api_name="save_guidelines")
        gr.api(admin.set_daily_goal, api_name="set_daily_goal")
        gr.api(admin.save_account, api_name="save_account")
        gr.api(admin.set_disabled, api_name="set_disabled")
        gr.api(annotators.set_assignment, api_name="set_assignment")
        gr.api(annotators.set_second_pass, api_name="set_second_pass")
        gr.api(annotators.mark_gold, api_name="mark_gold")
        gr.api(annotators.quality, api_name="annotator_stats")
    return demo.queue(default_concurrency_limit=8)


def serve(cfg: AppConfig, block: bool = True) -> tuple[gr.Blocks, PairQueue]:
    registry, queue = prepare(cfg)
    notice = users.ensure_accounts(open_db(cfg.db_path), cfg.users_file)
    if notice:
        print(notice, flush=True)
    demo = build_blocks(cfg, queue)
    # An annotator waiting for a pair holds a thread while it sleeps; Gradio's 40 would let 40
    # waiting annotators hold up everyone's votes. Nothing describes the app to a stranger:
    # FastAPI's /openapi.json is off (Gradio already turns /docs and /redoc off), and so is
    # /monitoring, whose per-endpoint traffic any logged-in annotator could read.
    users.hide_api_before_login()
    demo.launch(server_name=cfg.host, server_port=cfg.port, auth=users.authenticator(cfg.db_path),
                auth_message="Log in to annotate.", head=shortcut_js(cfg.mode), css=render.CSS,
                prevent_thread_lock=True, show_error=True, ssr_mode=False, max_threads=256,
                app_kwargs={"openapi_url": None}, enable_monitoring=False)
    users.keep_sessions(demo.server_app, cfg.db_path)
    if block:
        demo.block_thread()
    return demo, queue
