"""One training round, all or nothing: data snapshot, reward model, policy update, evaluation,
registration and the promotion gate.

Everything a round writes goes under its work folder first. Only when the adapter and the
reward model are complete are they renamed into `adapters/` and `reward_models/` and the
version registered, and only then may it be promoted; so an exception, Ctrl-C, SIGTERM or
kill -9 at any point leaves the live policy and the database as they were. A kill -9 leaves
a round marked running with a dead pid; the next round marks it failed and clears its folder.
"""
import dataclasses
import json
import logging
import os
import random
import shutil
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from policy import adapters, models
from policy.registry import PolicyRegistry
from storage import evaluations, queries, rounds
from storage.aggregation import Aggregation
from storage.rounds import ALGOS, DEFAULT_ALGO, round_lock
from storage.db import open_db
from storage.exports import HELDOUT_FRACTION
from storage.paths import data_dir, round_outputs

from . import common, data, dpo, rloo, sft
from .dpo import DPOSettings, train_dpo
from .evaluate import CANDIDATE, EvalConfig, Evaluation, evaluate
from .ppo import PPOConfig, train_ppo
from .progress import PhaseClock, ProgressConfig, RoundProgress, TrainerProgress
from .reward_model import RewardModel, RewardModelConfig, train_reward_model
from .rejection_sampling import RejectionSamplingSettings, Selection, best_of_n
from .rloo import RLOOSettings, train_rloo
from .sft import SFTSettings, train_sft

log = logging.getLogger(__name__)

# Each algorithm as the phases that update the policy, in order. "best of n" is rejection
# sampling (SFT examples and online DPO pairs from the live policy's answers, see
# `rejection_sampling`); "sft" and "dpo" train on those and on the team's own data.
PHASES = {"rloo": ("rloo",), "dpo": ("dpo",), "ppo": ("ppo",), "sft": ("sft",),
          "rs-sft": ("best of n", "sft"), "online-dpo": ("best of n", "dpo"),
          "rs-sft-dpo": ("best of n", "sft", "dpo")}


@dataclass
class GateConfig:
    """Promote automatically only a candidate the reward model prefers to the live policy beyond
    chance, that stays near it, and that writes at most a few more broken answers than the base.

    A win-rate above 0.5 on its own is passed by a coin half the time. Asking the lower end of
    its interval (`eval.confidence`, 95% by default) to clear 0.5 lets a candidate no better
    than live through at most 2.5% of the time.
    """
    min_win_rate: float = 0.5   # the lower end of the win-rate's interval against live must exceed it
    max_kl: float = 20.0        # mean KL per answer (nats, k3 estimate) against the live policy
    # Share of empty or looping answers the candidate may add to the base model's. A reward model
    # can prefer a loop that repeats what it rewards: a third DPO round on "engaging" looped in 14%
    # of its answers, and the reward model still preferred it to live. Measured against the base,
    # not live, so that rounds cannot add a few points each (RLOO on plain: base 3%, round 1 6%,
    # round 2 10%).
    max_degenerate_rise: float = 0.05

    def decide(self, m: dict) -> tuple[bool, str]:
        """Whether the candidate passes, and why, in words with its figures."""
        rate = (f"reward-model win-rate against live {m['rm_win_rate_vs_live']:.2f} "
                f"(interval {m['rm_win_rate_vs_live_low']:.2f}-{m['rm_win_rate_vs_live_high']:.2f}, "
                f"{m['eval_answers']:.0f} answers)")
        kl = f"KL {m['kl_to_ref']:.1f} nats per answer"
        if m["rm_win_rate_vs_live_low"] <= self.min_win_rate:
            return False, f"{rate}: its lower end does not clear {self.min_win_rate}; {kl}"
        if m["kl_to_ref"] > self.max_kl:
            return False, f"{kl} exceeds the bound {self.max_kl}; {rate}"
        broken = (f"{m['degenerate_share']:.0%} of its answers empty or looping against the base's "
                  f"{m['degenerate_share_base']:.0%}")
        if m["degenerate_share"] > m["degenerate_share_base"] + self.max_degenerate_rise + 1e-9:  # float shares
            return False, f"{broken}, more than {self.max_degenerate_rise:.0%} more; {rate}"
        return True, f"{rate} clears {self.min_win_rate}; {kl}, within {self.max_kl}; {broken}"


@dataclass
class RoundConfig:
    algo: str = DEFAULT_ALGO
    data_dir: Path = field(default_factory=data_dir)
    model: str | None = None       # if given, must be the database's base model
    heldout_fraction: float = HELDOUT_FRACTION
    min_pairs: int = 8             # fewer decisive votes than this is not worth a round
    max_rl_prompts: int = 64       # training prompts PPO, RLOO and rejection sampling sample from, drawn anew each round
    auto_promote: bool = True
    # The adapter every phase trains, "lora" or "ia3"; "" trains the live version's kind on
    # (LoRA on the base model), so a round launched without it never drops an IA3 live policy.
    adapter: str = ""
    data: Aggregation = field(default_factory=Aggregation)  # how judgements become training rows
    reward: RewardModelConfig = field(default_factory=RewardModelConfig)
    dpo: DPOSettings = field(default_factory=DPOSettings)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    rloo: RLOOSettings = field(default_factory=RLOOSettings)
    sft: SFTSettings = field(default_factory=SFTSettings)
    rs: RejectionSamplingSettings = field(default_factory=RejectionSamplingSettings)  # the best of N
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    progress: ProgressConfig = field(default_factory=ProgressConfig)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "prefloop.db"

    def record(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


@dataclass
class RoundResult:
    round_id: int
    version_id: int
    metrics: dict
    promoted: bool
    decision: str


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM (`kill`, a service manager's stop) unwinds like Ctrl-C so cleanup runs."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def clear_dead_rounds(db, root: Path) -> None:
    """Called holding the round lock, so no round is running: anything a round left is dead."""
    rounds.fail_stale_rounds(db)
    registered = rounds.registered_round_ids(db)
    for parent in ("rounds", "adapters", "reward_models"):
        for folder in (root / parent).glob("round-*"):
            number = folder.name.removeprefix("round-")
            if folder.is_dir() and not (number.isdigit() and int(number) in registered):
                shutil.rmtree(folder, ignore_errors=True)


def run_round(cfg: RoundConfig, log_path: str | None = None) -> RoundResult:
    if cfg.algo not in ALGOS:
        raise ValueError(f"--algo must be one of {ALGOS}")
    common.configure_wandb(cfg.data_dir)
    with round_lock(cfg.data_dir), sigterm_as_interrupt():
        db = open_db(cfg.db_path)
        check_base_model(cfg, db)
        cfg = with_adapter(cfg, adapter_kind(cfg, db))
        clear_dead_rounds(db, cfg.data_dir)
        round_id = rounds.start_round(db, cfg.algo, cfg.record(), os.getpid(), log_path)
        work = cfg.data_dir / "rounds" / f"round-{round_id}"
        os.environ["WANDB_RUN_GROUP"] = f"round-{round_id}"
        progress = RoundProgress(db, round_id, cfg.progress)
        try:
            trained = _train_and_evaluate(cfg, db, round_id, work, progress)
            version_id = _register(cfg, db, round_id, trained, progress)
        except BaseException as e:  # nothing was registered: remove every trace but the failed row
            rounds.fail_round(db, round_id, f"{type(e).__name__}: {e}")
            for folder in (work, *round_outputs(cfg.data_dir, round_id)):
                shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            progress.close()
        shutil.rmtree(work, ignore_errors=True)
        promoted, decision = _gate(cfg, db, round_id, version_id, trained)
        return RoundResult(round_id, version_id, trained.metrics, promoted, decision)


def check_base_model(cfg: RoundConfig, db) -> None:
    """An adapter only fits the base model it was trained on, the database's version 0."""
    base = rounds.get_version(db, 0)["base_model"]
    if cfg.model and models.model_name(cfg.model) != base:
        raise ValueError(f"this database's base model is {base!r}, not {cfg.model!r}")


def adapter_kind(cfg: RoundConfig, db) -> str:
    """The kind the round trains: the one asked for, else the live version's."""
    if cfg.adapter:
        if cfg.adapter not in adapters.KINDS:
            raise ValueError(f"adapter must be one of {', '.join(adapters.KINDS)}, not {cfg.adapter!r}")
        return cfg.adapter
    live = rounds.get_version(db, queries.live_version_id(db))["adapter_path"]
    return adapters.kind(live) if live else "lora"


def with_adapter(cfg: RoundConfig, kind: str) -> RoundConfig:
    """Every phase trains one kind: a phase could not continue the previous phase's adapter
    of another kind (`common.continues`), and would silently start afresh."""
    methods = {name: dataclasses.replace(getattr(cfg, name), lora=dataclasses.replace(getattr(cfg, name).lora, kind=kind))
               for name in ("dpo", "ppo", "rloo", "sft")}
    return dataclasses.replace(cfg, adapter=kind, **methods)


@dataclass
class Trained:
    live: int
    metrics: dict
    evaluation: Evaluation
    adapter_dir: Path
    rm_dir: Path
    kept: list[dict]  # rejection sampling's kept answers, stored with the version


def _train_and_evaluate(cfg: RoundConfig, db, round_id: int, work: Path, progress: RoundProgress) -> Trained:
    base_spec = rounds.get_version(db, 0)["base_model"]
    base_path = models.checkpoint_dir(base_spec, cfg.data_dir / "models")
    live = queries.live_version_id(db)
    live_adapter = rounds.get_version(db, live)["adapter_path"]
    live_adapter = Path(live_adapter) if live_adapter else None

    with PhaseClock() as clock:
        clock.start("snapshot")
        progress.begin("snapshot", 1)
        snap = data.snapshot(db, cfg.heldout_fraction, cfg.data)
        if cfg.data.demonstration_pairs:  # the live policy answers the reference answers' prompts
            made = data.demonstration_pairs(db, live_registry(cfg, base_spec, live, live_adapter), live,
                                            cfg.data.demonstration_pairs, seed=round_id)
            snap.train = made + snap.train  # first: DPO keeps the newest rows, the judgements, when it cuts
            snap.summary["demonstration_pairs"] = len(made)
        if len(snap.train) < cfg.min_pairs or not snap.heldout:
            raise ValueError(f"{len(snap.train)} training and {len(snap.heldout)} held-out preference "
                             f"pairs: a round needs at least {cfg.min_pairs} and some held out; "
                             "collect more judgements first")
        phases = PHASES[cfg.algo]
        examples = data.demonstrations(db, cfg.heldout_fraction, snap.summary["excluded_annotators"],
                                       cfg.sft.max_imported, seed=round_id) if "sft" in phases else []
        if phases == ("sft",) and not examples:  # said before the reward model's minute, not after
            raise ValueError("nothing to fine-tune on: no corrected or imported answers to training prompts; "
                             "write corrections or import demonstrations, or choose rs-sft")
        rounds.set_round_votes(db, round_id, snap.vote_ids, snap.summary, snap.last_vote_id)
        progress.update(1, {"training pairs": len(snap.train), "held-out pairs": len(snap.heldout)})
        rl_prompts = random.Random(round_id).sample(snap.train_prompts,
                                                    min(cfg.max_rl_prompts, len(snap.train_prompts)))

        rm_dir = work / "reward_model"
        clock.start("reward model")
        metrics = train_reward_model(base_path, snap.train, snap.heldout, cfg.reward, rm_dir, progress)
        adapter_dir = work / "adapter"
        start = live_adapter  # where the next phase's update begins: the live adapter, or SFT's
        selection = Selection([], [], [], {})
        rm = None  # held only while a phase uses it; the evaluation loads it again if need be
        for phase in phases:
            clock.start(phase)  # frees what the previous phase left before this one loads a model
            if phase == "best of n":
                progress.begin(phase, len(rl_prompts))
                selection = best_of_n(live_registry(cfg, base_spec, live, live_adapter), live, rl_prompts,
                                      RewardModel.load(rm_dir), cfg.rs, seed=round_id * 100_000,
                                      pooled=rounds.best_answers(db, rl_prompts) if cfg.rs.pool else {},
                                      progress=lambda done, total: progress.update(done))
                metrics |= selection.metrics
            elif phase == "sft":
                examples = selection.examples + examples
                if not examples:
                    raise ValueError("nothing to fine-tune on: no sampled answer cleared its prompt's median by "
                                     "the margin, and there are no corrected or imported answers")
                progress.begin(phase, cfg.sft.steps(len(examples)), every=0)  # every step is a point
                start = adapter_dir if phase == phases[-1] else work / "sft"
                metrics |= train_sft(base_path, live_adapter, examples, cfg.sft, start,
                                     run_name=f"round-{round_id}-sft",
                                     callbacks=[TrainerProgress(progress, sft.PROGRESS_FIGURES)])
            elif phase == "dpo":
                # The sampled pairs last: DPO keeps the newest rows when it cuts, and they are the
                # most on-policy of all (the live policy wrote them this round).
                pairs = snap.train + selection.pairs
                progress.begin(phase, cfg.dpo.steps(len(pairs)), every=0)
                metrics |= train_dpo(base_path, start, pairs, cfg.dpo, adapter_dir, run_name=f"round-{round_id}-dpo",
                                     callbacks=[TrainerProgress(progress, dpo.PROGRESS_FIGURES)])
            elif phase == "rloo":
                progress.begin(phase, cfg.rloo.steps, every=0)
                rm = RewardModel.load(rm_dir)
                metrics |= train_rloo(base_path, live_adapter, rl_prompts, rm,
                                      cfg.rloo, adapter_dir, run_name=f"round-{round_id}-rloo",
                                      callbacks=[TrainerProgress(progress, rloo.PROGRESS_FIGURES)])
            else:
                progress.begin(phase, cfg.ppo.iterations, every=0)
                rm = RewardModel.load(rm_dir)
                history = train_ppo(base_path, live_adapter, rl_prompts, rm.score, cfg.ppo, adapter_dir,
                                    log=lambda s: progress.update(s["iteration"], {
                                        "loss": s["policy_loss"], "reward": s["reward"], "KL": s["kl"]}))
                metrics |= {f"ppo_{k}": v for k, v in history[-1].items()}

        clock.start("evaluate")
        progress.begin("evaluate")  # its total is known once the cached answers are found
        registry = live_registry(cfg, base_spec, live, live_adapter)
        registry.ensure_loaded(CANDIDATE, adapter_dir)
        evaluation = evaluate(registry, rm or RewardModel.load(rm_dir), snap.heldout_prompts, live, cfg.eval,
                              cache_dir=answer_cache(cfg.data_dir),
                              progress=lambda done, total: progress.update(done, total=total))
        metrics |= evaluation.metrics | clock.stop()
        log_to_wandb(cfg, round_id, metrics, evaluation.judgements)

        return Trained(live, metrics, evaluation, adapter_dir, rm_dir, selection.kept)


def live_registry(cfg: RoundConfig, base_spec: str, live: int, live_adapter: Path | None) -> PolicyRegistry:
    """The live policy, ready to sample from."""
    registry = PolicyRegistry.load(base_spec, cfg.data_dir / "models")
    registry.ensure_loaded(live, live_adapter)
    return registry


def answer_cache(root: Path) -> Path:
    """Where registered versions' held-out answers are kept (see `evaluate.AnswerCache`)."""
    return root / "rounds" / "answers"


def _register(cfg: RoundConfig, db, round_id: int, trained: Trained, progress: RoundProgress) -> int:
    """Rename the finished outputs into place, then record the version in one transaction."""
    progress.begin("register", 1)
    final_adapter, final_rm = round_outputs(cfg.data_dir, round_id)
    for src, dst in ((trained.adapter_dir, final_adapter), (trained.rm_dir, final_rm)):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    with queries.immediate(db):  # the version, its figures and the round's end: all or none
        version_id = rounds.add_version(db, parent_id=trained.live, algo=cfg.algo, round_id=round_id,
                                        adapter_path=str(final_adapter.resolve()))
        rounds.add_metrics(db, trained.metrics, round_id=round_id, version_id=version_id)
        evaluations.add_model_judgements(db, round_id, [j.row(version_id) for j in trained.evaluation.judgements],
                                         cfg.eval.sampling.record(), cfg.eval.seed)
        rounds.add_best_answers(db, round_id, trained.kept)
        progress.update(1)
        rounds.finish_round(db, round_id, version_id)
    trained.evaluation.keep_candidate_as(version_id)
    return version_id


def _gate(cfg: RoundConfig, db, round_id: int, version_id: int, trained: Trained) -> tuple[bool, str]:
    """Promote a passing candidate, unless someone changed the live version meanwhile: it was
    measured against the version live when the round began, not against the one live now.
    The decision and its reason are recorded with the round either way."""
    passes, reason = cfg.gate.decide(trained.metrics)
    with queries.immediate(db):
        live_now = queries.live_version_id(db)
        if not passes:
            decision = f"kept as a candidate: {reason}"
        elif not cfg.auto_promote:
            decision = f"kept as a candidate (auto-promotion is off), though it passes: {reason}"
        elif live_now != trained.live:
            decision = (f"kept as a candidate: version {live_now} became live during the round, and "
                        f"it was measured against version {trained.live}; it passes: {reason}")
        else:
            rounds.promote(db, version_id, by=f"round {round_id} gate")
            decision = f"promoted: {reason}"
        accuracy = rounds.reward_accuracy(trained.metrics)
        if accuracy:  # how far to trust the reward model that measured it
            decision += f". Its reward model ranked judged pairs it had not trained on {accuracy}"
        rounds.set_round_decision(db, round_id, decision)
    log.info("round %d, version %d %s", round_id, version_id, decision)
    return decision.startswith("promoted"), decision


def log_to_wandb(cfg: RoundConfig, round_id: int, metrics: dict, judgements) -> None:
    """The round's config, its figures and a table of sample answers, in one W&B run."""
    if os.environ.get("WANDB_MODE") == "disabled":
        return
    import wandb
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "prefloop"), name=f"round-{round_id}",
                     group=f"round-{round_id}", job_type="evaluate", config=cfg.record(),
                     dir=os.environ.get("WANDB_DIR"))
    run.log(metrics)
    run.summary["gate"] = cfg.gate.decide(metrics)[1]
    table = wandb.Table(columns=["prompt", "candidate", "opponent_version", "opponent",
                                 "candidate_score", "opponent_score"])
    for j in judgements:
        table.add_data(j.prompt, j.completion_a, j.version_b, j.completion_b, j.score_a, j.score_b)
    run.log({"samples": table})
    run.finish()
