"""`python -m trainer report --out DIR`: the Leaderboard tab's figures as PNG files plus a
Markdown summary, for sharing outside the app. The numbers come from `storage.dashboard`,
the same functions the tab plots."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402

from storage import agreement, dashboard, evaluations, rounds  # noqa: E402

RATING_HEADER = "| version | rating | 95% interval | votes | win-rate vs base |\n|---|---|---|---|---|\n"


def _lines(rows: list[dict], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for metric in dict.fromkeys(r["metric"] for r in rows):
        points = [(r["round"], r["value"]) for r in rows if r["metric"] == metric and r["round"] is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=metric)
    ax.set(title=title, xlabel="round")
    if rows:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bars(rows: list[dict], x: str, y: str, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([str(r[x]) for r in rows], [r[y] for r in rows])
    ax.set(title=title, xlabel=x, ylabel=y)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ratings_table(rows: list[dict]) -> str:
    def fmt(v, spec=".0f"):
        return "–" if v is None else format(v, spec)
    body = "".join(f"| {r['version']} | {fmt(r['rating'])} | {r['interval']} "
                   f"| {r['votes']} | {fmt(r['win_rate_vs_base'], '.2f')} |\n" for r in rows)
    return RATING_HEADER + body


def _rounds_table(rows: list[dict]) -> str:
    """Each round's outcome, the gate's decision in its own words, and how judgements became rows."""
    body = "".join(f"| {r['id']} | {r['algo']} | {r['status']} | {r['version_id'] or '–'} "
                   f"| {r['decision'] or r['error'] or '–'} "
                   f"| {rounds.data_line(r) or '–'} |\n"
                   for r in reversed(rows))
    return ("| round | algorithm | status | version | decision | data |\n|---|---|---|---|---|---|\n"
            + body)


def write_report(db, out: Path) -> list[Path]:
    """Every figure as PNG and summary.md linking them; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "rm_accuracy.png": lambda p: _lines(dashboard.metric_by_round(db, ["rm_accuracy", "rm_unseen_accuracy"]),
                                            "Reward model accuracy on pairs it did not train on", p),
        "win_rate_vs_base.png": lambda p: _lines(
            dashboard.metric_by_round(db, ["rm_win_rate_vs_base"]) + dashboard.human_win_rate_by_version(db),
            "Win-rate against the base", p),
        "kl_and_reward.png": lambda p: _lines(dashboard.metric_by_round(db, ["kl_to_ref", "rm_score"]),
                                              "KL and mean reward", p),
        "judgements_per_day.png": lambda p: _bars(dashboard.judgements_per_day(db), "day", "judgements",
                                                  "Judgements per day", p),
        "judgements_per_annotator.png": lambda p: _bars(dashboard.judgements_per_annotator(db), "annotator",
                                                        "judgements", "Judgements per annotator", p),
        "scores.png": lambda p: _bars(dashboard.score_distribution(db), "score", "count", "1-10 scores", p),
    }
    written = []
    for name, draw in figures.items():
        draw(out / name)
        written.append(out / name)
    versions = rounds.versions_table(db)
    quality = agreement.quality(db)
    live = next(v["version"] for v in versions if v["live"])
    summary = [
        "# prefloop report\n",
        f"{len(versions)} policy versions; version {live} is live.\n",
        "## Leaderboard from blind human votes\n", _ratings_table(dashboard.leaderboard(db, "human")),
        "## Leaderboard judged by the reward model\n", _ratings_table(dashboard.leaderboard(db, "reward_model")),
        "## Rounds\n", _rounds_table(rounds.list_rounds(db, limit=1000)),
        "## Annotators\n", agreement.summary_markdown(quality) + "\n",
        agreement.annotators_markdown(quality["annotators"]),
        "## Figures\n", *(f"![{p.stem}]({p.name})\n" for p in written),
    ]
    if evaluations.gallery(db):
        summary += ["\n", evaluations.gallery_markdown(db).replace("# prefloop: before and after", "## Gallery")]
    (out / "summary.md").write_text("\n".join(summary))
    return [*written, out / "summary.md"]
