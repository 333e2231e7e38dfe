"""python -m storage: import prompts, export preferences and corrected answers for training,
print counts and annotator agreement, set how pairs are assigned, mark gold pairs."""
import argparse
import json
import sys
from pathlib import Path

from . import agreement, exports, imports, inputs, near_duplicates, queries, share
from .aggregation import RULES, Aggregation
from .migrations import VERDICTS
from .db import open_db
from .paths import data_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage", description=__doc__)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, default=data_dir(),
                       help="data directory, as for `python -m app` and `python -m trainer` "
                            "(default: $PREFLOOP_DATA, else ./data); its database is prefloop.db")
    where.add_argument("--db", type=Path, help="the SQLite database itself, instead of --data-dir")
    sub = parser.add_subparsers(dest="command", required=True)
    p_import = sub.add_parser("import", help="import prompts from JSONL, CSV or a datasets folder")
    p_import.add_argument("file")
    p_import.add_argument("--near-dup-threshold", type=float, default=near_duplicates.DEFAULT_THRESHOLD,
                          help="skip prompts this similar to a known one (0-1, character 5-gram Jaccard; "
                               "default %(default)s; 1 skips only copies with the same words)")
    p_import.add_argument("--dry-run", action="store_true", help="report what would be imported and skipped, import nothing")
    p_import_prefs = sub.add_parser(
        "import-preferences", help="import an existing preference set: TRL (explicit or implicit prompt), "
        "HH-RLHF transcripts, or two answers and a winner (JSONL, CSV, Parquet or a datasets folder)")
    p_import_prefs.add_argument("file")
    p_import_prefs.add_argument("--source", help="the set's name, kept with every row (default: the file's name without its extension)")
    p_import_prefs.add_argument("--columns", help="the file's column names, e.g. "
                                "prompt=Question,response_a=Answer1,response_b=Answer2,winner=Preference")
    p_import_demos = sub.add_parser(
        "import-demonstrations", help="import reference answers: TRL SFT (messages, or prompt/completion) or "
        "Alpaca (instruction/input/output); JSONL, CSV, Parquet or a datasets folder")
    p_import_demos.add_argument("file")
    p_import_demos.add_argument("--source", help="the set's name, kept with every row (default: the file's name without its extension)")
    p_import_gold = sub.add_parser("import-gold", help="import gold pairs: prompt, chosen, rejected (JSONL, CSV "
                                   "or a datasets folder); chosen is the expected verdict")
    p_import_gold.add_argument("file")
    p_export = sub.add_parser("export", help="export preference pairs (trl) or corrected answers (sft)")
    p_export.add_argument("--format", choices=["trl", "sft", "hf"], default="trl",
                          help="trl: prompt/chosen/rejected; sft: conversational messages; hf: a dataset "
                               "to share (train/test, Parquet, a dataset card)")
    p_export.add_argument("--real-names", action="store_true", help="hf: keep annotators' names (default: annotator-N)")
    p_export.add_argument("--out", required=True, help="folder for the .jsonl file and dataset/")
    p_export.add_argument("--rule", choices=RULES, default="every",
                          help="how several judgements of a pair become rows (trl; default: every)")
    p_export.add_argument("--min-gold-accuracy", type=float, default=0.0,
                          help="leave out annotators below this gold accuracy (trl)")
    sub.add_parser("stats", help="counts, annotator agreement and each annotator's figures")
    p_copy = sub.add_parser("browse-copy", help="a copy of the database without accounts and sessions, for Datasette")
    p_copy.add_argument("out", help="the new file, e.g. /tmp/prefloop-view.db")
    p_assign = sub.add_parser("assign", help="how many annotators judge each pair, the gold rate, and the second pass")
    p_assign.add_argument("--overlap", type=int, help="different annotators per pair (1-10)")
    p_assign.add_argument("--gold-rate", type=float, help="share of pairs shown that are gold (0-0.5)")
    p_assign.add_argument("--second-pass", choices=queries.SECOND_PASS_MODES,
                          help="off: people judge every pair; route: a judge sure enough labels a pair and people "
                               "get the least sure first; review: people confirm or overturn a judge's suggestion")
    p_assign.add_argument("--audit-share", type=float,
                          help="route and review: share of pairs shown at random without a suggestion (0.05-0.5)")
    p_assign.add_argument("--route-confidence", type=float,
                          help="route: how sure a judge must be to label a pair alone (0.5-1)")
    p_gold = sub.add_parser("gold", help="mark a pair as a gold pair with its expected verdict")
    p_gold.add_argument("pair", type=int)
    p_gold.add_argument("expected", choices=VERDICTS,
                        help="0: the pair's first stored answer is better; 1: the second; tie; both_bad")
    args = parser.parse_args(argv)

    db = open_db(args.db or args.data_dir / "prefloop.db")
    if args.command == "import":
        try:
            result = imports.import_prompt_file(db, args.file, args.near_dup_threshold, args.dry_run)
        except (imports.ImportFileError, ValueError) as e:
            print(e, file=sys.stderr)
            return 1
        for copy in result.near_copies:
            print(f"near-copy ({copy.similarity:.2f}): {copy.text!r}\n    of: {copy.similar_to!r}")
        print(f"{'would import' if args.dry_run else 'imported'} {result.added} prompts; "
              f"{'would drop' if args.dry_run else 'dropped'} {result.exact_duplicates} exact copies, "
              f"{result.case_duplicates} case/whitespace copies and {len(result.near_copies)} near-copies "
              f"(similarity >= {args.near_dup_threshold})")
    elif args.command == "import-preferences":
        try:
            result = imports.import_preference_file(db, args.file, args.source, args.columns)
        except (imports.ImportFileError, inputs.InputError) as e:
            print(e, file=sys.stderr)
            return 1
        skipped = "; ".join(f"{n} skipped: {why}" for why, n in result.skipped.items())
        labels = f"; removed the HH role label (Human: or Assistant:) from {result.labels_removed} texts" \
            if result.labels_removed else ""
        print(f"imported {result.added} preference pairs ({result.already} already imported"
              f"{'; ' + skipped if skipped else ''}{labels}); rounds include them unless "
              "--set data.imported=exclude (or weight:W)")
    elif args.command == "import-demonstrations":
        try:
            added, already = imports.import_demonstration_file(db, args.file, args.source)
        except imports.ImportFileError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"imported {added} demonstrations ({already} already imported); `export --format sft` includes them, and a round turns "
              "them into preference pairs with --set data.demonstration_pairs=N")
    elif args.command == "import-gold":
        try:
            added, known = imports.import_gold_file(db, args.file, by="cli")
        except imports.ImportFileError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"imported {added} gold pairs; {known} were already gold pairs")
    elif args.command == "export" and args.format == "hf":
        try:
            counts = share.export_hf(db, args.out, Aggregation(args.rule, args.min_gold_accuracy), args.real_names)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"wrote a dataset ({', '.join(f'{k}: {v} rows' for k, v in counts.items())}) with its card "
              f"to {args.out}")
    elif args.command == "export" and args.format == "sft":
        n = exports.export_sft(db, args.out)
        print(f"wrote {n} corrected answers to {args.out}/demonstrations.jsonl and {args.out}/dataset")
    elif args.command == "export":
        n = exports.export_trl(db, args.out, Aggregation(args.rule, args.min_gold_accuracy))
        print(f"wrote {n} preference rows to {args.out}/preferences.jsonl and {args.out}/dataset")
    elif args.command == "browse-copy":
        try:
            out = share.browsing_copy(db, args.out)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"wrote {out}: datasette {out} --metadata assets/datasette-metadata.json")
    elif args.command in ("assign", "gold"):
        try:
            if args.command == "gold":
                queries.mark_gold(db, args.pair, args.expected, by="cli")
            else:
                with queries.immediate(db):  # all or nothing
                    queries.set_second_pass(db, args.second_pass, args.audit_share, args.route_confidence)
                    queries.set_assignment(db, args.overlap, args.gold_rate)
        except inputs.InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        second = queries.second_pass(db)
        print(f"overlap {queries.overlap(db)}, gold rate {queries.gold_rate(db)}, "
              f"{db['gold_pairs'].count} gold pairs; second pass {second.mode} "
              f"(audit share {second.audit_share}, route confidence {second.confidence})")
    else:
        print(json.dumps(queries.stats(db) | {"quality": agreement.quality(db)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
