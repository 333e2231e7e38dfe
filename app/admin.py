"""The Admin tab: launch a round as its own process, follow it, read every version's metrics,
promote a candidate or roll back.

Training never runs inside the UI process: a round takes minutes of both CPU cores and may
be killed, and the app must keep serving annotators throughout. The app learns of a new live
version the same way whoever promotes it: through the database (see `pair_queue`).
"""
import contextlib
import html
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import gradio as gr

from storage import accounts, guidelines, inputs, queries, rounds
from storage.aggregation import RULES
from storage.db import thread_db
from storage.migrations import ROLES

from . import users
from .render import refusal

REPO = Path(__file__).resolve().parent.parent
LOG_TAIL_CHARS = 4000


class Admin:
    def __init__(self, data_dir: Path, db_path: Path):
        self.data_dir, self.db_path = data_dir, db_path
        # The round's process takes the data directory's lock only once Python and torch have
        # loaded, seconds after it starts; till then the launch itself answers "busy".
        self._launching = threading.Lock()
        self._launched: subprocess.Popen | None = None

    def is_admin(self, request: gr.Request | None) -> bool:
        """Asked of the database on every call, so a demotion counts on the next request."""
        return users.current_role(thread_db(self.db_path), getattr(request, "username", None)) == "admin"

    def _require_admin(self, request: gr.Request | None) -> str:
        if not self.is_admin(request):
            raise gr.Error("only admin accounts can do this")
        return request.username

    def launch_round(self, algo: str, request: gr.Request, rule: str = "every",
                     min_gold_accuracy: float = 0.0) -> int:
        """Start `python -m trainer round` in the background; returns its process id. `rule` is
        how several judgements of a pair become training rows (every, majority or weighted);
        annotators whose gold accuracy is below `min_gold_accuracy` are left out."""
        self._require_admin(request)
        if algo not in rounds.ALGOS:
            raise gr.Error(f"algorithm must be one of {rounds.ALGOS}")
        if rule not in RULES:
            raise gr.Error(f"the aggregation rule must be one of {', '.join(RULES)}")
        if not isinstance(min_gold_accuracy, (int, float)) or not 0 <= min_gold_accuracy <= 1:
            raise gr.Error("the minimum gold accuracy must be a number from 0 to 1")
        with self._launching:
            if (self._launched and self._launched.poll() is None) or rounds.round_running(self.data_dir):
                raise gr.Error("a round is already starting or running; wait for it to finish")
            logs = self.data_dir / "rounds"
            logs.mkdir(parents=True, exist_ok=True)
            log_path = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{algo}-{uuid.uuid4().hex[:6]}.log"
            with open(log_path, "w") as log:
                self._launched = subprocess.Popen(
                    [sys.executable, "-m", "trainer", "--data-dir", str(self.data_dir), "round",
                     "--algo", algo, "--log", str(log_path), "--set", f"data.rule={rule}",
                     "--set", f"data.min_gold_accuracy={float(min_gold_accuracy)}"],
                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
            return self._launched.pid

    def round_status(self) -> tuple[str, str]:
        """The latest round as a line of Markdown, and the tail of its log."""
        db = thread_db(self.db_path)
        latest = rounds.list_rounds(db, limit=1)
        if latest and latest[0]["status"] == "running":
            # A killed round no longer holds the lock. Take it while marking, so a round that
            # starts meanwhile waits rather than being marked failed itself.
            with contextlib.suppress(rounds.RoundBusy), rounds.round_lock(self.data_dir, wait=0):
                rounds.fail_stale_rounds(db)
                latest = rounds.list_rounds(db, limit=1)
        if not latest:
            return "No rounds yet.", ""
        r = latest[0]
        line = (f"**Round {r['id']}** ({r['algo']}): {r['status']}"
                f"{', ' + r['phase'] if r['status'] == 'running' else ''}"
                f"{', made version ' + str(r['version_id']) if r['version_id'] else ''}"
                f"{' — ' + html.escape(r['decision']) if r['decision'] else ''}"
                f"{' — ' + html.escape(r['error']) if r['error'] else ''}")
        log = ""
        if r["log_path"] and Path(r["log_path"]).exists():
            log = Path(r["log_path"]).read_text(errors="replace")[-LOG_TAIL_CHARS:]
        return line, log

    def versions(self) -> list[dict]:
        return rounds.versions_table(thread_db(self.db_path))

    def promote(self, version_id: int, request: gr.Request) -> int:
        """Make a version live (a candidate, or any earlier one); returns the live version."""
        who = self._require_admin(request)
        try:
            version_id = inputs.whole_number("the version", version_id, low=0)
            rounds.promote(thread_db(self.db_path), version_id, by=who)
        except (inputs.InputError, rounds.PromotionError) as e:
            raise refusal(e) from None
        return version_id

    def rollback(self, request: gr.Request) -> int:
        """Make the previously live version live again; returns it."""
        self._require_admin(request)
        try:
            version = rounds.previous_live_version(thread_db(self.db_path))
        except rounds.PromotionError as e:
            raise refusal(e) from None
        return self.promote(version, request)

    def save_account(self, name: str, password: str | None, role: str, request: gr.Request) -> str:
        """Add an account, or change one's role or password (empty keeps it); counts at once."""
        who = self._require_admin(request)
        try:
            name = inputs.checked_text("the name", name, 64)
            result = users.add_account(thread_db(self.db_path), name, password or None, role, by=who)
        except inputs.InputError as e:
            raise refusal(e) from None
        return f"{name}: {result} as {role}."

    def set_disabled(self, name: str, disabled: bool, request: gr.Request) -> str:
        """Disable an account (it loses access on its next request) or enable it again."""
        who = self._require_admin(request)
        if not isinstance(disabled, bool):
            raise gr.Error("disabled must be true or false")
        try:
            name = inputs.checked_text("the name", name, 64)
            users.set_disabled(thread_db(self.db_path), name, disabled, by=who)
        except inputs.InputError as e:
            raise refusal(e) from None
        return f"{name} is {'disabled' if disabled else 'enabled'}."

    def save_guidelines(self, text: str, request: gr.Request) -> int:
        """Save the annotation guidelines (Markdown) as a new version; returns the version in force."""
        who = self._require_admin(request)
        try:
            return guidelines.save_guideline(thread_db(self.db_path), text, author=who)
        except inputs.InputError as e:
            raise refusal(e) from None

    def set_daily_goal(self, goal: int, request: gr.Request) -> int:
        """Judgements a day each annotator aims for, shown with their count (0: no goal)."""
        self._require_admin(request)
        try:
            goal = inputs.whole_number("the daily goal", goal, 0, 10_000)
        except inputs.InputError as e:
            raise refusal(e) from None
        queries.put_setting(thread_db(self.db_path), "daily_goal", str(goal))
        return goal

    def account_rows(self) -> list[dict]:
        return accounts.list_accounts(thread_db(self.db_path))


def as_frame(rows: list[dict]):
    import pandas as pd
    frame = pd.DataFrame(rows)
    return frame.round(3) if not frame.empty else frame


def admin_tab(demo: gr.Blocks, admin: Admin) -> gr.Tab:
    """Build the tab; it is shown only to admin accounts, and every action checks the role too."""
    with gr.Tab("Admin", visible=False) as tab:
        with gr.Row():
            algo = gr.Radio(list(rounds.ALGOS), value=rounds.DEFAULT_ALGO, label="Algorithm")
            rule = gr.Radio(list(RULES), value="every", label="Several judgements of a pair become",
                            info="every vote a row · the majority's verdict · the majority's, "
                                 "weighted by agreement")
            min_gold = gr.Slider(0, 1, value=0, step=0.05, label="Leave out annotators below this gold accuracy")
            launch = gr.Button("Launch a round", variant="primary")
        status = gr.Markdown()
        log = gr.Code(label="Round log (tail)", language=None, lines=12, max_lines=12)
        versions = gr.Dataframe(label="Versions and their metrics", interactive=False, wrap=True)
        with gr.Row():
            version = gr.Number(label="Version", precision=0, minimum=0)
            promote = gr.Button("Promote this version")
            rollback = gr.Button("Roll back to the previous live version", variant="stop")
        done = gr.Markdown()
        with gr.Accordion("Accounts", open=False):
            account_table = gr.Dataframe(label="Accounts", interactive=False)
            with gr.Row():
                name = gr.Textbox(label="Name", max_length=64)
                password = gr.Textbox(label="New password (empty keeps the old one)", type="password")
                role = gr.Radio(list(ROLES), value="annotator", label="Role")
            with gr.Row():
                save = gr.Button("Save account", variant="primary")
                enable = gr.Button("Enable")
                disable = gr.Button("Disable", variant="stop")
            account_done = gr.Markdown()
        with gr.Accordion("Guidelines", open=False):
            guide_text = gr.Textbox(label="Guidelines shown on the Annotate tab (Markdown); each save is "
                                    "a new version, recorded with every later vote", lines=12,
                                    max_length=guidelines.MAX_GUIDELINE_CHARS)
            save_guide = gr.Button("Save as a new version", variant="primary")
            guide_done = gr.Markdown()
            with gr.Row():
                goal = gr.Number(label="Daily goal per annotator (0: none)", precision=0, minimum=0)
                set_goal = gr.Button("Set the goal")
    timer = gr.Timer(2.0, active=False)

    def refresh(request: gr.Request):
        if not admin.is_admin(request):
            return "", "", None, None
        line, tail = admin.round_status()
        return line, tail, as_frame(admin.versions()), as_frame(admin.account_rows())

    def on_load(request: gr.Request):
        show = admin.is_admin(request)
        current = guidelines.current_guideline(thread_db(admin.db_path)) if show else None
        goal_now = queries.daily_goal(thread_db(admin.db_path)) if show else 0
        return gr.Tab(visible=show), gr.Timer(active=show), current["text"] if current else "", goal_now

    def set_goal_to(n, request: gr.Request) -> str:
        n = admin.set_daily_goal(n, request)
        return f"Daily goal: {n} judgements." if n else "No daily goal."

    def save_guide_text(text, request: gr.Request) -> str:
        return f"Guidelines version {admin.save_guidelines(text, request)} is in force."

    def start(algo_name: str, rule_name: str, gold: float, request: gr.Request) -> str:
        return f"Started round process {admin.launch_round(algo_name, request, rule_name, gold)}."

    def make_live(version_id: int, request: gr.Request) -> str:
        return f"Version {admin.promote(version_id, request)} is live."

    def roll_back(request: gr.Request) -> str:
        return f"Rolled back: version {admin.rollback(request)} is live."

    def save_it(who, secret, kind, request: gr.Request):
        return admin.save_account(who, secret, kind, request), ""

    def disabler(disabled: bool):
        def set_it(who, request: gr.Request):
            return admin.set_disabled(who, disabled, request)
        return set_it

    views = [status, log, versions, account_table]
    demo.load(on_load, None, [tab, timer, guide_text, goal], api_visibility="private")
    save_guide.click(save_guide_text, [guide_text], guide_done, api_visibility="private")
    set_goal.click(set_goal_to, [goal], guide_done, api_visibility="private")
    timer.tick(refresh, None, views, api_visibility="private", show_progress="hidden")
    launch.click(start, [algo, rule, min_gold], done, api_visibility="private")
    promote.click(make_live, [version], done, api_visibility="private").success(
        refresh, None, views, api_visibility="private")
    rollback.click(roll_back, None, done, api_visibility="private").success(
        refresh, None, views, api_visibility="private")
    save.click(save_it, [name, password, role], [account_done, password], api_visibility="private").success(
        refresh, None, views, api_visibility="private")
    for button, disabled in ((enable, False), (disable, True)):
        button.click(disabler(disabled), [name], account_done, api_visibility="private").success(
            refresh, None, views, api_visibility="private")
    return tab
