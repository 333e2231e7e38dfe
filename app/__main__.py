"""python -m app: serve the annotation app, add or change an account, import a users.json."""
import argparse
import getpass
import logging
import os
import sys
from pathlib import Path

from policy.settings import apply_overrides
from storage import accounts
from storage.db import open_db
from storage.migrations import ROLES
from storage.paths import data_dir

from . import users
from .annotate import MODES
from .server import AppConfig, serve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=data_dir(),
                        help="database, model cache and users file (default: $PREFLOOP_DATA or ./data)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="start the app (http://127.0.0.1:7860 by default)")
    p_serve.add_argument("--model", default="smollm2",
                         help="'smollm2' (embedded default), 'tiny' (test model) or a local checkpoint folder")
    p_serve.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                         help="default: $GRADIO_SERVER_NAME, else 127.0.0.1")
    p_serve.add_argument("--port", type=int, default=os.environ.get("GRADIO_SERVER_PORT", "7860"),
                         help="default: $GRADIO_SERVER_PORT, else 7860")
    p_serve.add_argument("--mode", choices=MODES, default="both",
                         help="pick a winner, score each side 1-10, or both")
    p_serve.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="override a setting, e.g. queue.batch=4 or queue.sampling.max_new_tokens=96 "
                              "(repeatable)")
    p_user = sub.add_parser("adduser", help="add an account, or change one's password or role "
                            "(counts at once, also in a running app)")
    p_user.add_argument("name")
    p_user.add_argument("--role", choices=ROLES, help="admins may launch rounds, promote versions "
                        "and manage accounts (default: annotator, or the account's current role)")
    p_user.add_argument("--admin", action="store_const", const="admin", dest="role", help="--role admin")
    p_user.add_argument("--password", help="default: asked for on the terminal")
    p_import = sub.add_parser("import-users", help="import the accounts of a users.json "
                              "(earlier versions kept them there) that the database lacks")
    p_import.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    if args.command in ("adduser", "import-users"):
        db = open_db(args.data_dir / "prefloop.db")
        try:
            if args.command == "import-users":
                print(f"imported {accounts.import_users_file(db, args.file, by='cli')} account(s)")
                users.retire_demo(db, by="cli")
                return 0
            password = args.password or getpass.getpass(f"password for {args.name}: ")
            current = accounts.get_account(db, args.name)
            role = args.role or (current["role"] if current else "annotator")
            result = users.add_account(db, args.name, password, role, by="cli")
        except accounts.AccountError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{args.name}: {result}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(apply_overrides(AppConfig(model=args.model, data_dir=args.data_dir, host=args.host,
                                     port=args.port, mode=args.mode), args.set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
