"""The Leaderboard tab: ratings from blind human votes and, apart, from the reward model;
and the plots an ML engineer checks after each round."""
from pathlib import Path

import gradio as gr
import pandas as pd

from storage import dashboard
from storage.db import thread_db

RATING_COLUMNS = ["version", "rating", "ci_low", "ci_high", "votes", "wins", "losses", "ties",
                  "win_rate_vs_base", "games_vs_base"]


def ratings_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RATING_COLUMNS).round(3)


def figures(db_path: Path) -> dict[str, pd.DataFrame]:
    """Every table and plot of the tab, from one read of the database."""
    db = thread_db(db_path)
    return {
        "human": ratings_frame(dashboard.leaderboard(db, "human")),
        "model": ratings_frame(dashboard.leaderboard(db, "reward_model")),
        "accuracy": pd.DataFrame(dashboard.metric_by_round(db, ["rm_accuracy"]),
                                 columns=["round", "version", "metric", "value"]),
        "win_rate": pd.DataFrame(dashboard.metric_by_round(db, ["rm_win_rate_vs_base"])
                                 + dashboard.human_win_rate_by_version(db),
                                 columns=["round", "version", "metric", "value"]),
        "kl_reward": pd.DataFrame(dashboard.metric_by_round(db, ["kl_to_ref", "rm_score"]),
                                  columns=["round", "version", "metric", "value"]),
        "per_day": pd.DataFrame(dashboard.judgements_per_day(db), columns=["day", "judgements"]),
        "per_annotator": pd.DataFrame(dashboard.judgements_per_annotator(db),
                                      columns=["annotator", "judgements"]),
        "scores": pd.DataFrame(dashboard.score_distribution(db), columns=["score", "count"]),
    }


def leaderboard_tab(demo: gr.Blocks, db_path: Path) -> None:
    with gr.Tab("Leaderboard"):
        refresh = gr.Button("Refresh")
        gr.Markdown("Bradley-Terry ratings (base = 1000, 400 points = 10:1 odds) with bootstrap "
                    "95% intervals. **Human** ratings come from blind votes on the Compare tab; "
                    "**model-judged** ones from the reward model after each round.")
        human = gr.Dataframe(label="Human blind votes", interactive=False)
        model = gr.Dataframe(label="Model-judged (reward model)", interactive=False)
        with gr.Row():
            accuracy = gr.LinePlot(x="round", y="value", color="metric",
                                   title="Reward model held-out accuracy by round")
            win_rate = gr.LinePlot(x="round", y="value", color="metric",
                                   title="Win-rate against the base by round")
        with gr.Row():
            kl_reward = gr.LinePlot(x="round", y="value", color="metric",
                                    title="KL and mean reward by round")
            scores = gr.BarPlot(x="score", y="count", title="1-10 scores given")
        with gr.Row():
            per_day = gr.BarPlot(x="day", y="judgements", title="Judgements per day")
            per_annotator = gr.BarPlot(x="annotator", y="judgements", title="Judgements per annotator")
    outputs = [human, model, accuracy, win_rate, kl_reward, per_day, per_annotator, scores]
    keys = ["human", "model", "accuracy", "win_rate", "kl_reward", "per_day", "per_annotator", "scores"]

    def load():
        data = figures(db_path)
        return [data[k] for k in keys]

    demo.load(load, None, outputs, api_visibility="private")
    refresh.click(load, None, outputs, api_visibility="private")
