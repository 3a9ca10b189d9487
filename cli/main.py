"""The `kubetune` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.flags import port, zero_or_more
from kubetune_common.config import PORTS


def _port(name: str) -> int:
    return int(os.environ.get(f"KUBETUNE_{name.upper()}_PORT", PORTS[name]))


def build_parser() -> argparse.ArgumentParser:
    from cli import commands
    from cli.local_platform import DEFAULT_HOME

    parser = argparse.ArgumentParser(prog="kubetune", description="Self-hosted hyperparameter tuning for tabular deep learning.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole platform locally")
    up.add_argument("--home", type=Path, default=Path(os.environ.get("KUBETUNE_HOME", DEFAULT_HOME)),
                    help=f"data home (KUBETUNE_HOME; default ./{DEFAULT_HOME})")
    up.add_argument("--workers", type=zero_or_more, default=2, help="tuning workers (default 2; 0: none, studies wait)")
    for name in ("gateway", "ui", "nats", "mlflow", "data", "tuning", "tracking", "registry", "worker", "metrics"):
        up.add_argument(f"--{name}-port", type=port, default=_port(name), help=f"{name} port (default {PORTS[name]})")

    status = sub.add_parser("status", help="health, pid, port and restarts of every part of a running `kubetune up`",
                            parents=[commands.argparse_common()])
    home = os.environ.get("KUBETUNE_HOME")
    status.add_argument("--home", type=Path, default=Path(home) if home else None,
                        help="its data home (KUBETUNE_HOME; default: the home of the `kubetune up` serving --gateway, "
                             f"else ./{DEFAULT_HOME})")

    commands.add_client_commands(sub)
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        from cli.local_platform import run_up

        ports = {name: getattr(args, f"{name}_port") for name in PORTS}
        return run_up(args.home, args.workers, ports)
    if args.command == "status":
        from cli.local_platform import run_status

        return run_status(args.home, args.gateway, args.json)
    return args.handler(args)


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`kubetune runs list | head`): stop quietly, as Unix tools
        # do. stdout is pointed at /dev/null so the interpreter's last flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, what a shell reports for a tool that SIGPIPE ended
    sys.exit(code)


if __name__ == "__main__":
    main()
