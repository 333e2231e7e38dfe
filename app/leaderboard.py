"""The Leaderboard tab: ratings from blind human votes and, apart, from the reward model;
and the plots an ML engineer checks after each round."""
from pathlib import Path

import gradio as gr
import pandas as pd

from storage import dashboard
from storage.db import thread_db

from .plots import bars, lines

RATING_COLUMNS = {"version": "version", "rating": "rating", "interval": "95% interval", "votes": "votes",
                  "wins": "wins", "losses": "losses", "ties": "ties",
                  "win_rate_vs_base": "win-rate vs base", "games_vs_base": "games vs base"}


def ratings_frame(rows: list[dict]) -> pd.DataFrame:
    """Ratings as whole points and the interval as words when there is none to show."""
    frame = pd.DataFrame(rows, columns=list(RATING_COLUMNS)).rename(columns=RATING_COLUMNS)
    frame["rating"] = pd.to_numeric(frame["rating"]).round(0).astype("Int64")
    frame["win-rate vs base"] = pd.to_numeric(frame["win-rate vs base"]).round(3)
    return frame


def by_round(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["round", "version", "metric", "value"])


def figures(db_path: Path) -> dict:
    """Every table and plot of the tab, from one read of the database."""
    db = thread_db(db_path)
    no_round = "no finished round yet"
    return {
        "human": ratings_frame(dashboard.leaderboard(db, "human")),
        "model": ratings_frame(dashboard.leaderboard(db, "reward_model")),
        "accuracy": lines(by_round(dashboard.metric_by_round(db, ["rm_accuracy", "rm_unseen_accuracy"])), "round", "value",
                          "Reward model accuracy on pairs it did not train on, by round", color="metric", x_whole=False,
                          y_title="accuracy", y_domain=(0, 1), empty=no_round),
        "win_rate": lines(by_round(dashboard.metric_by_round(db, ["rm_win_rate_vs_base"])
                                   + dashboard.human_win_rate_by_version(db)), "round", "value",
                          "Win-rate against the base by round", color="metric", x_whole=False,
                          y_title="win-rate", y_domain=(0, 1), empty=no_round),
        # Apart: nats and reward-model scores on one axis would flatten one of them.
        "kl": lines(by_round(dashboard.metric_by_round(db, ["kl_to_ref"])), "round", "value",
                    "KL to the previous live policy by round", x_whole=False,
                    y_title="nats per answer", empty=no_round),
        "reward": lines(by_round(dashboard.metric_by_round(db, ["rm_score"])), "round", "value",
                        "Mean reward-model score by round", x_whole=False, y_title="score",
                        empty=no_round),
        "scores": bars(pd.DataFrame(dashboard.score_distribution(db), columns=["score", "count"]),
                       "score", "count", "1-10 scores given", y_title="times given",
                       empty="no scores given yet"),
        "per_day": bars(pd.DataFrame(dashboard.judgements_per_day(db), columns=["day", "judgements"]),
                        "day", "judgements", "Judgements per day", empty="no judgements yet"),
        "per_annotator": bars(pd.DataFrame(dashboard.judgements_per_annotator(db),
                                           columns=["annotator", "judgements"]),
                              "annotator", "judgements", "Judgements per annotator", empty="no judgements yet"),
    }


PLOT_ROWS = (("accuracy", "win_rate"), ("kl", "reward"), ("scores", "per_day", "per_annotator"))
KEYS = ["human", "model", *(key for row in PLOT_ROWS for key in row)]


def leaderboard_tab(demo: gr.Blocks, db_path: Path) -> None:
    with gr.Tab("Leaderboard"):
        refresh = gr.Button("Refresh")
        gr.Markdown("Bradley-Terry ratings (base = 1000, 400 points = 10:1 odds) with bootstrap "
                    "95% intervals, given from 10 votes on. **Human** ratings come from blind votes "
                    "on the Compare tab; **model-judged** ones from the reward model after each round.")
        human = gr.Dataframe(label="Human blind votes", interactive=False)
        model = gr.Dataframe(label="Model-judged (reward model)", interactive=False)
        plots = []
        for row in PLOT_ROWS:
            with gr.Row():
                plots += [gr.Plot(show_label=False, elem_id=f"plot-{key.replace('_', '-')}",
                                   elem_classes="chart") for key in row]
    outputs = [human, model, *plots]

    def load():
        data = figures(db_path)
        return [data[k] for k in KEYS]

    demo.load(load, None, outputs, api_visibility="private")
    refresh.click(load, None, outputs, api_visibility="private")
