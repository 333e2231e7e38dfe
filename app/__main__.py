"""python -m app: serve the annotation app, or add a user to the users file."""
import argparse
import getpass
import logging
import sys
from pathlib import Path

from policy.settings import apply_overrides
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
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=7860)
    p_serve.add_argument("--mode", choices=MODES, default="both",
                         help="pick a winner, score each side 1-10, or both")
    p_serve.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="override a setting, e.g. queue.batch=4 or queue.sampling.max_new_tokens=96 "
                              "(repeatable)")
    p_user = sub.add_parser("adduser", help="add or update an account in DATA_DIR/users.json")
    p_user.add_argument("name")
    p_user.add_argument("--admin", action="store_true", help="may launch rounds and promote versions")
    p_user.add_argument("--password", help="default: asked for on the terminal")
    args = parser.parse_args(argv)

    if args.command == "adduser":
        password = args.password or getpass.getpass(f"password for {args.name}: ")
        path = args.data_dir / "users.json"
        users.add_user(path, args.name, password, "admin" if args.admin else "annotator")
        print(f"saved {args.name} in {path}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(apply_overrides(AppConfig(model=args.model, data_dir=args.data_dir, host=args.host,
                                     port=args.port, mode=args.mode), args.set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
