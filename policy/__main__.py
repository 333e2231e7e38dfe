"""python -m policy: run a sampling worker that the app can send generation to."""
import argparse
import logging
import sys
from pathlib import Path

from storage.paths import data_dir

from .settings import apply_overrides
from .worker import WorkerConfig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=data_dir(),
                        help="where the converted model is cached (default: $PREFLOOP_DATA or ./data)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="answer vLLM's OpenAI-compatible API (the part the app uses) "
                                           "with this project's batched sampling")
    p_serve.add_argument("--model", default="smollm2",
                         help="'smollm2' (embedded default), 'tiny' (test model) or a local checkpoint folder")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8001)
    p_serve.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                         help="override a worker setting, e.g. max_rows=8 (repeatable)")
    args = parser.parse_args(argv)

    import uvicorn

    from .registry import PolicyRegistry
    from .worker import build_app
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = apply_overrides(WorkerConfig(model=args.model, host=args.host, port=args.port), args.set)
    registry = PolicyRegistry.load(cfg.model, args.data_dir / "models")
    uvicorn.run(build_app(registry, cfg), host=cfg.host, port=cfg.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
