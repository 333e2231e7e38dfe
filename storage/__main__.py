"""python -m storage: import prompts, export preferences for training, print counts."""
import argparse
import json
import sys

from . import exports, imports, queries
from .db import open_db
from .paths import default_db_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage", description=__doc__)
    parser.add_argument("--db", default=str(default_db_path()),
                        help="SQLite database (default: $PREFLOOP_DATA/prefloop.db, else data/prefloop.db)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_import = sub.add_parser("import", help="import prompts from JSONL, CSV or a datasets folder")
    p_import.add_argument("file")
    p_export = sub.add_parser("export", help="export decisive votes as preference pairs")
    p_export.add_argument("--format", choices=["trl"], default="trl")
    p_export.add_argument("--out", required=True, help="folder for preferences.jsonl and dataset/")
    sub.add_parser("stats", help="counts of prompts, pairs and votes")
    args = parser.parse_args(argv)

    db = open_db(args.db)
    if args.command == "import":
        try:
            result = imports.import_prompt_file(db, args.file)
        except imports.ImportFileError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"imported {result.added} prompts; dropped {result.exact_duplicates} exact and "
              f"{result.near_duplicates} case/whitespace duplicates")
    elif args.command == "export":
        n = exports.export_trl(db, args.out)
        print(f"wrote {n} preference rows to {args.out}/preferences.jsonl and {args.out}/dataset")
    else:
        print(json.dumps(queries.stats(db), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
