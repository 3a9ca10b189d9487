"""The `kubetune` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.common.config import PORTS


def _port(name: str) -> int:
    return int(os.environ.get(f"KUBETUNE_{name.upper()}_PORT", PORTS[name]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune", description="Self-hosted hyperparameter tuning for tabular deep learning.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole platform locally")
    up.add_argument("--home", type=Path, default=Path(os.environ.get("KUBETUNE_HOME", ".kubetune")),
                    help="data home (default ./.kubetune)")
    up.add_argument("--workers", type=int, default=2, help="tuning workers (default 2)")
    for name in ("gateway", "ui", "nats", "mlflow", "data", "tuning", "tracking", "registry", "worker", "metrics"):
        up.add_argument(f"--{name}-port", type=int, default=_port(name), help=f"{name} port (default {PORTS[name]})")

    status = sub.add_parser("status", help="health of every part of a running `kubetune up`")
    status.add_argument("--home", type=Path, default=Path(os.environ.get("KUBETUNE_HOME", ".kubetune")))
    status.add_argument("--json", action="store_true", help="machine-readable output")

    from cli import commands

    commands.add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        from cli.platform import run_up

        if args.workers < 0:
            sys.exit("kubetune: --workers must be 0 or more")
        ports = {name: getattr(args, f"{name}_port") for name in PORTS}
        sys.exit(run_up(args.home, args.workers, ports))
    if args.command == "status":
        from cli.platform import run_status

        sys.exit(run_status(args.home, args.json))
    sys.exit(args.handler(args))


if __name__ == "__main__":
    main()
