"""The Admin tab: launch a round as its own process, follow it phase by phase (steps, time left,
curves, the newest log lines, and at the end the gate's decision in words), read every version's
metrics, promote a candidate or roll back, each after saying what will happen.

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
from collections.abc import Callable
from pathlib import Path

import altair as alt
import gradio as gr
import pandas as pd

from storage import accounts, guidelines, inputs, queries, rounds
from storage.aggregation import RULES
from storage.db import thread_db
from storage.migrations import ROLES

from . import users
from .plots import lines
from .render import refusal

REPO = Path(__file__).resolve().parent.parent
LOG_TAIL_BYTES = 64_000   # read from the end of a round's log for its newest lines
LOG_TAIL_LINES = 200
# The versions table's columns (versions_table's keys -> headers); the rest is a click away.
VERSION_COLUMNS = {"version": "Version", "parent": "Parent", "algo": "Algorithm", "round": "Round",
                   "live": "Live", "created_at": "Created (UTC)", "reward_accuracy": "Reward accuracy",
                   "win_rate_vs_live": "Win-rate vs live", "win_rate_vs_base": "Win-rate vs base",
                   "kl_to_ref": "KL"}


class Admin:
    def __init__(self, data_dir: Path, db_path: Path, check_servable: Callable[[str], object] = lambda path: None):
        self.data_dir, self.db_path = data_dir, db_path
        self.check_servable = check_servable  # raises ValueError for an adapter the sampler cannot load
        # The round's process takes the data directory's lock only once Python and torch have
        # loaded, seconds after it starts; till then the launch itself answers "busy".
        self._launching = threading.Lock()
        self._launched: subprocess.Popen | None = None

    def is_admin(self, request: gr.Request | None) -> bool:
        """Asked of the database on every call, so a demotion counts on the next request."""
        return users.current_role(thread_db(self.db_path), getattr(request, "username", None)) == "admin"

    def require_admin(self, request: gr.Request | None) -> str:
        if not self.is_admin(request):
            raise gr.Error("only admin accounts can do this")
        return request.username

    def launch_round(self, algo: str, request: gr.Request, rule: str = "every",
                     min_gold_accuracy: float = 0.0) -> int:
        """Start `python -m trainer round` in the background; returns its process id. `rule` is
        how several judgements of a pair become training rows (every, majority or weighted);
        annotators whose gold accuracy is below `min_gold_accuracy` are left out."""
        self.require_admin(request)
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

    def latest_round(self) -> dict | None:
        """The newest round; one left running by a killed process is marked failed first."""
        db = thread_db(self.db_path)
        latest = rounds.list_rounds(db, limit=1)
        if latest and latest[0]["status"] == "running":
            # A killed round no longer holds the lock. Take it while marking, so a round that
            # starts meanwhile waits rather than being marked failed itself.
            with contextlib.suppress(rounds.RoundBusy), rounds.round_lock(self.data_dir, wait=0):
                rounds.fail_stale_rounds(db)
                latest = rounds.list_rounds(db, limit=1)
        return latest[0] if latest else None

    def round_phases(self, round_id: int) -> list[dict]:
        return rounds.round_progress(thread_db(self.db_path), round_id)

    def versions(self) -> list[dict]:
        return rounds.versions_table(thread_db(self.db_path))

    def promotion_notice(self, version_id: int, request: gr.Request) -> str:
        """What promoting `version_id` would do, in words, before anything is done."""
        self.require_admin(request)
        db = thread_db(self.db_path)
        try:
            version_id = inputs.whole_number("the version", version_id, low=0)
            rounds.get_version(db, version_id)
        except (inputs.InputError, rounds.PromotionError) as e:
            raise refusal(e) from None
        live = queries.live_version_id(db)
        if version_id == live:
            raise gr.Error(f"version {version_id} is already live")
        return (f"Version {version_id} will become live: annotators get its pairs from their next pair. "
                f"Version {live}, live now, stays registered; rolling back makes it live again.")

    def rollback_notice(self, request: gr.Request) -> tuple[int, str]:
        """The version a rollback returns to, and what it would do, in words."""
        self.require_admin(request)
        db = thread_db(self.db_path)
        try:
            version = rounds.previous_live_version(db)
        except rounds.PromotionError as e:
            raise refusal(e) from None
        live = queries.live_version_id(db)
        return version, (f"Version {version} will become live again: annotators get its pairs from their "
                         f"next pair. Version {live}, live now, stays registered and can be promoted again.")

    def promote(self, version_id: int, request: gr.Request) -> int:
        """Make a version live (a candidate, or any earlier one); returns the live version."""
        who = self.require_admin(request)
        try:
            version_id = inputs.whole_number("the version", version_id, low=0)
            db = thread_db(self.db_path)
            adapter = rounds.get_version(db, version_id)["adapter_path"]
            if adapter and Path(adapter).is_dir():  # a missing folder: `promote` says so
                self.check_servable(adapter)
            rounds.promote(db, version_id, by=who)
        except ValueError as e:  # bad input, a refused promotion, an adapter the sampler cannot load
            raise refusal(e) from None
        return version_id

    def rollback(self, request: gr.Request) -> int:
        """Make the previously live version live again; returns it."""
        self.require_admin(request)
        try:
            version = rounds.previous_live_version(thread_db(self.db_path))
        except rounds.PromotionError as e:
            raise refusal(e) from None
        return self.promote(version, request)

    def save_account(self, name: str, password: str | None, role: str, request: gr.Request) -> str:
        """Add an account, or change one's role or password (empty keeps it); counts at once."""
        who = self.require_admin(request)
        try:
            name = inputs.checked_text("the name", name, 64)
            result = users.add_account(thread_db(self.db_path), name, password or None, role, by=who)
        except inputs.InputError as e:
            raise refusal(e) from None
        return f"{name}: {result} as {role}."

    def set_disabled(self, name: str, disabled: bool, request: gr.Request) -> str:
        """Disable an account (it loses access on its next request) or enable it again."""
        who = self.require_admin(request)
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
        who = self.require_admin(request)
        try:
            return guidelines.save_guideline(thread_db(self.db_path), text, author=who)
        except inputs.InputError as e:
            raise refusal(e) from None

    def set_daily_goal(self, goal: int, request: gr.Request) -> int:
        """Judgements a day each annotator aims for, shown with their count (0: no goal)."""
        self.require_admin(request)
        try:
            goal = inputs.whole_number("the daily goal", goal, 0, 10_000)
        except inputs.InputError as e:
            raise refusal(e) from None
        queries.put_setting(thread_db(self.db_path), "daily_goal", str(goal))
        return goal

    def account_rows(self) -> list[dict]:
        return accounts.list_accounts(thread_db(self.db_path))


def as_frame(rows: list[dict]):
    frame = pd.DataFrame(rows)
    return frame.round(3) if not frame.empty else frame


def status_line(r: dict, alive: bool) -> str:
    """The round in one line of Markdown. A finished round is not "done" until the gate has
    decided: until then it says so, and then it says whether the version went live, and why.
    `alive`: the round's process still holds the data directory (it may yet decide)."""
    head = f"**Round {r['id']}** ({r['algo']})"
    if r["status"] == "running":
        return f"{head}: running, {html.escape(r['phase'] or 'starting')}"
    if r["status"] == "failed":
        return f"{head}: failed — {html.escape(r['error'] or 'no reason recorded')}"
    made = f"made version {r['version_id']}"
    if not r["decision"] and alive:
        return f"{head}: {made}; deciding whether to promote it…"
    if not r["decision"]:
        return (f"{head}: {made}, but its process ended before the gate decided: version "
                f"{r['version_id']} is a candidate; promote it by hand if you want it live")
    decision = html.escape(r["decision"])
    if decision.startswith("promoted"):
        return f"{head}: {made}. **Version {r['version_id']} was promoted and is live**: {decision.removeprefix('promoted: ')}"
    return f"{head}: {made}. **Version {r['version_id']} was not promoted**: {decision}"


def log_tail(path: str | None) -> str:
    """The newest lines of a round's log, the newest last. A progress bar redrawn with carriage
    returns shows as its latest state."""
    if not path or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - LOG_TAIL_BYTES))
        text = f.read().decode(errors="replace")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines()[-LOG_TAIL_LINES:])


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def phases_html(phases: list[dict], failed: bool = False) -> str:
    """Each phase with a bar, its steps done of how many, time spent and time left; a failed
    round's last phase is the one it stopped in."""
    rows = []
    for i, p in enumerate(phases):
        total, step = p["total"], p["step"]
        bar = f'<progress value="{step}" max="{total}"></progress>' if total else "<progress></progress>"
        count = f"{step}/{total}" if total else str(step)
        if failed and i == len(phases) - 1:
            left = "stopped"
        elif p["done"]:
            left = "done" if total is None or step >= total else "stopped"
        elif p["seconds_left"] is None:
            left = "estimating…"
        else:
            left = f"about {duration(p['seconds_left'])} left"
        rows.append(f"<tr><td>{html.escape(p['phase'])}</td><td>{bar}</td><td>{count}</td>"
                    f"<td>{duration(p['seconds'])}</td><td>{left}</td></tr>")
    head = "<tr><th>Phase</th><th>Progress</th><th>Steps</th><th>Elapsed</th><th>Left</th></tr>"
    return f"<table id='round-phase-table'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>" if rows else ""


def training_curves(phases: list[dict]) -> tuple[str, list[dict]]:
    """The latest phase that logged a training loss, and its points."""
    for p in reversed(phases):
        if any("loss" in point for point in p["points"]):
            return p["phase"], p["points"]
    return "", []


def curve(points: list[dict], keys: list[str], title: str) -> alt.Chart:
    """The figures against the step, a marker at every point, so the first logged step already shows."""
    frame = pd.DataFrame([{"step": p["step"], "figure": key, "value": p[key]} for p in points
                          for key in keys if key in p], columns=["step", "figure", "value"])
    return lines(frame, "step", "value", title, color="figure", y_title=None if len(keys) > 1 else keys[0])


def versions_frame(rows: list[dict]):
    """The versions with the columns worth comparing, under readable headers."""
    chosen = [{header: row.get(key) for key, header in VERSION_COLUMNS.items()} for row in rows]
    for row in chosen:
        row["Live"] = "live" if row["Live"] else ""
        row["Created (UTC)"] = (row["Created (UTC)"] or "")[:16].replace("T", " ")
    return pd.DataFrame(chosen).round(2)


# Gradio's own autoscroll follows a textbox only once; this keeps the newest line in view after
# every update, unless the admin has scrolled up to read (then it stays where they are).
FOLLOW_LOG = """() => {
  const box = document.querySelector('#round-log textarea');
  if (!box) return;
  if (!box.dataset.end || box.scrollTop >= Number(box.dataset.end) - 4) box.scrollTop = box.scrollHeight;
  box.dataset.end = box.scrollHeight - box.clientHeight;
}"""


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
        status = gr.Markdown(elem_id="round-status")
        phases = gr.HTML(elem_id="round-phases")
        with gr.Row():
            loss_plot = gr.Plot(show_label=False, elem_id="round-loss", elem_classes="chart")
            figure_plot = gr.Plot(show_label=False, elem_id="round-figures", elem_classes="chart")
        log = gr.Textbox(label="Round log (newest lines last)", lines=12, max_lines=12,
                         interactive=False, elem_id="round-log")
        versions = gr.Dataframe(label="Versions (select a row for all its figures)", interactive=False,
                                elem_id="versions")
        with gr.Accordion("All figures of the selected version", open=False) as details_box:
            details = gr.JSON(label="Version")
        with gr.Row():
            version = gr.Number(label="Version", precision=0, minimum=0)
            promote = gr.Button("Promote this version")
            rollback = gr.Button("Roll back to the previous live version", variant="stop")
        with gr.Group(visible=False, elem_id="confirm-promotion") as confirm_box:
            notice = gr.Markdown()
            with gr.Row():
                confirm = gr.Button("Confirm", variant="primary")
                cancel = gr.Button("Cancel")
        pending = gr.State(None)  # (the version a confirmation would make live, the live one when asked)
        curves_shown = gr.State(None)  # what the plots show, so an unchanged one is not redrawn
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

    def refresh(shown, request: gr.Request):
        if not admin.is_admin(request):
            return "", "", gr.skip(), gr.skip(), "", None, None, shown
        r = admin.latest_round()
        table = versions_frame(admin.versions()), as_frame(admin.account_rows())
        if r is None:
            return "No rounds yet.", "", gr.skip(), gr.skip(), "", *table, shown
        progress = admin.round_phases(r["id"])
        phase, points = training_curves(progress)
        now_shown = (r["id"], phase, len(points))
        plots = (gr.skip(), gr.skip())
        if now_shown != shown:
            main = sorted({k for p in points for k in p} - {"step", "loss"})
            plots = (curve(points, ["loss"], f"{phase}: training loss") if points else None,
                     curve(points, main, f"{phase}: {', '.join(main)}") if main else None)
        alive = r["status"] != "failed" and rounds.round_running(admin.data_dir)
        return (status_line(r, alive), phases_html(progress, r["status"] == "failed"), *plots,
                log_tail(r["log_path"]), *table, now_shown)

    def show_version(event: gr.SelectData, request: gr.Request):
        """A selected row's version, every figure measured on it, set as the one to promote."""
        admin.require_admin(request)
        number = event.row_value[0]
        row = next(v for v in admin.versions() if v["version"] == number)
        return row, number, gr.Accordion(open=True)

    def live_now() -> int:
        return queries.live_version_id(thread_db(admin.db_path))

    def ask_promote(version_id, request: gr.Request):
        return admin.promotion_notice(version_id, request), gr.Group(visible=True), (version_id, live_now())

    def ask_rollback(request: gr.Request):
        version_id, words = admin.rollback_notice(request)
        return words, gr.Group(visible=True), (version_id, live_now())

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

    def make_live(asked: tuple[int, int] | None, request: gr.Request):
        """Only what the notice said: if another version went live meanwhile (a round's gate, another
        admin), the notice no longer holds, and nothing is done."""
        if asked is None:
            raise gr.Error("nothing to confirm")
        version_id, live_then = asked
        if live_now() != live_then:
            raise gr.Error(f"version {live_now()} went live since you asked; nothing changed — "
                           "look again and ask again")
        return f"Version {admin.promote(version_id, request)} is live.", gr.Group(visible=False), None

    def hide_confirmation():
        return gr.Group(visible=False), None

    def call_off():
        return "Nothing changed.", gr.Group(visible=False), None

    def save_it(who, secret, kind, request: gr.Request):
        return admin.save_account(who, secret, kind, request), ""

    def disabler(disabled: bool):
        def set_it(who, request: gr.Request):
            return admin.set_disabled(who, disabled, request)
        return set_it

    views = [status, phases, loss_plot, figure_plot, log, versions, account_table, curves_shown]
    demo.load(on_load, None, [tab, timer, guide_text, goal], api_visibility="private")
    save_guide.click(save_guide_text, [guide_text], guide_done, api_visibility="private")
    set_goal.click(set_goal_to, [goal], guide_done, api_visibility="private")
    timer.tick(refresh, [curves_shown], views, api_visibility="private", show_progress="hidden")
    log.change(None, js=FOLLOW_LOG)
    launch.click(start, [algo, rule, min_gold], done, api_visibility="private")
    versions.select(show_version, None, [details, version, details_box], api_visibility="private")
    # A refused request hides an earlier, still open confirmation: its Confirm would act on that.
    promote.click(ask_promote, [version], [notice, confirm_box, pending], api_visibility="private").failure(
        hide_confirmation, None, [confirm_box, pending], api_visibility="private")
    rollback.click(ask_rollback, None, [notice, confirm_box, pending], api_visibility="private").failure(
        hide_confirmation, None, [confirm_box, pending], api_visibility="private")
    confirmed = confirm.click(make_live, [pending], [done, confirm_box, pending], api_visibility="private")
    confirmed.success(refresh, [curves_shown], views, api_visibility="private")
    confirmed.failure(hide_confirmation, None, [confirm_box, pending], api_visibility="private")
    cancel.click(call_off, None, [done, confirm_box, pending], api_visibility="private")
    save.click(save_it, [name, password, role], [account_done, password], api_visibility="private").success(
        refresh, [curves_shown], views, api_visibility="private")
    for button, disabled in ((enable, False), (disable, True)):
        button.click(disabler(disabled), [name], account_done, api_visibility="private").success(
            refresh, [curves_shown], views, api_visibility="private")
    return tab
