"""`colm-serve` command line: running the app, model preparation and config checks."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from colm_serve.config import DEFAULT_MODEL_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="colm-serve", description="CoLM on Ray Serve utilities.")
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare-models", help="Download and convert the offline default models.")
    prep.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    prep.add_argument("--model", action="append", help="Model name (default: every model of --set).")
    prep.add_argument("--set", default="default", choices=("default", "quality"),
                      help="default: the embedded set-up's model; quality: also the Qwen2.5-Coder 0.5B and 1.5B.")
    prep.add_argument("--force", action="store_true", help="Convert again even when prepared.")

    run = sub.add_parser("run", help="serve run CONFIG on Serve's fast path (HAProxy, throughput-optimized).")
    run.add_argument("config", type=Path, nargs="?", default=Path("serve_config.yaml"))
    run.add_argument("--plain", action="store_true",
                     help="Serve's default Python proxy instead (what a bare `serve run` gives).")

    check = sub.add_parser("check-config", help="Validate a Serve config file against the app's models.")
    check.add_argument("config", type=Path)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "run":
        from colm_serve.launch import run as launch

        return launch(args.config, plain=args.plain)
    if args.command == "prepare-models":
        from colm_serve.prepare import MODEL_SETS, prepare

        for name in args.model or MODEL_SETS[args.set]:
            print(prepare(name, args.model_dir, force=args.force))
        return 0
    from colm_serve.deploy_config import validate_file

    try:
        lines = validate_file(args.config)
    except (ValueError, OSError) as exc:
        print(f"invalid config: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
