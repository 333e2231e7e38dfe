"""python -m trainer: run training rounds, watch for new judgements, promote and roll back,
and write a shareable report."""
import argparse
import json
import logging
import sys
import time
from pathlib import Path

from policy import adapters
from storage import rounds as round_queries
from storage.db import open_db
from storage.paths import data_dir


def round_config(args):
    from policy.settings import apply_overrides

    from .rounds import RoundConfig
    cfg = RoundConfig(algo=args.algo, data_dir=Path(args.data_dir), model=args.model,
                      auto_promote=not args.no_promote)
    return apply_overrides(cfg, ([f"adapter={args.adapter}"] if args.adapter else []) + (args.set or []))


def cmd_round(args) -> int:
    from .rounds import run_round
    try:
        result = run_round(round_config(args), log_path=args.log)
    except round_queries.RoundBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"round": result.round_id, "version": result.version_id,
                      "promoted": result.promoted, "decision": result.decision,
                      "metrics": result.metrics}, indent=2))
    return 0


def cmd_watch(args) -> int:
    """Start a round whenever N new judgements have arrived; one round at a time, in this process."""
    from .rounds import run_round
    db = open_db(Path(args.data_dir) / "prefloop.db")
    failed_at = None
    print(f"watching for {args.every_new} new judgements (Ctrl-C to stop)", flush=True)
    while True:
        new = round_queries.votes_since_last_round(db)
        if new >= args.every_new and new != failed_at:
            print(f"{new} new judgements: starting a {args.algo} round", flush=True)
            try:
                result = run_round(round_config(args))
                print(f"round {result.round_id} made version {result.version_id}, {result.decision}",
                      flush=True)
                failed_at = None
            except round_queries.RoundBusy:  # someone else's round: try again at the next poll
                pass
            except Exception as e:  # the round is marked failed; wait for more data before retrying
                logging.exception("round failed: %s", e)
                failed_at = new
        time.sleep(args.poll)


def cmd_promote(args) -> int:
    db = open_db(Path(args.data_dir) / "prefloop.db")
    version = args.version if args.command == "promote" or args.version is not None \
        else round_queries.previous_live_version(db)
    round_queries.promote(db, version, by=f"cli {args.command}")
    print(f"version {version} is live")
    return 0


def cmd_versions(args) -> int:
    db = open_db(Path(args.data_dir) / "prefloop.db")
    for row in round_queries.versions_table(db):
        print(json.dumps(row))
    return 0


def cmd_report(args) -> int:
    from .report import write_report
    files = write_report(open_db(Path(args.data_dir) / "prefloop.db"), Path(args.out))
    print(f"wrote {len(files)} files to {args.out}: " + ", ".join(f.name for f in files))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    parser.add_argument("--data-dir", default=str(data_dir()),
                        help="data directory (default: $PREFLOOP_DATA, else ./data)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("round", "run one round from the live policy"),
                            ("watch", "run a round whenever N new judgements arrive")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--algo", choices=round_queries.ALGOS, default=round_queries.DEFAULT_ALGO,
                       help="how the policy is updated (default: %(default)s)")
        p.add_argument("--model", help="checked against the database's base model ('smollm2', 'tiny' or a path)")
        p.add_argument("--no-promote", action="store_true", help="keep the new version a candidate")
        p.add_argument("--adapter", choices=adapters.KINDS,
                       help="the adapter every phase trains (default: the live version's kind, LoRA on the "
                            "base model); vLLM serves LoRA only")
        p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                       help="override a setting, e.g. dpo.lr=1e-4 or gate.max_kl=10 (repeatable)")
        p.set_defaults(func=cmd_round if name == "round" else cmd_watch)
        if name == "round":
            p.add_argument("--log", help="the log file this round's output goes to, shown in the app")
        else:
            p.add_argument("--every-new", type=int, default=64, metavar="N")
            p.add_argument("--poll", type=float, default=30.0, help="seconds between checks")
    p = sub.add_parser("promote", help="make a version live")
    p.add_argument("version", type=int)
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("rollback", help="make the previously live version live again (or VERSION)")
    p.add_argument("version", type=int, nargs="?")
    p.set_defaults(func=cmd_promote)
    sub.add_parser("versions", help="every version with its metrics").set_defaults(func=cmd_versions)
    p = sub.add_parser("report", help="the leaderboard and figures as PNG plus summary.md")
    p.add_argument("--out", required=True, help="folder to write into")
    p.set_defaults(func=cmd_report)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except (ValueError, round_queries.PromotionError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the round is marked failed and the live policy is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
