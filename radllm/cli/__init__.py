"""The `radllm` console command.

Each subcommand is one module in this package that defines:

    NAME: str                      # the subcommand, e.g. "phantoms"
    HELP: str                      # one line for `radllm --help`
    def configure(parser) -> None  # add its arguments
    def run(args) -> int           # do the work by calling library functions; return exit status

Modules are discovered, so adding a command never touches this file. A module may instead define
`register(subparsers)` when it has nested subcommands (e.g. `radllm prepare iu-xray`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
from collections.abc import Sequence

from radllm.errors import RadllmError


def build_parser() -> argparse.ArgumentParser:
    """Collect every command module under `radllm.cli` into one argparse parser."""
    parser = argparse.ArgumentParser(
        prog="radllm",
        description="radllm: tokenizer building, training, generation and evaluation for chest X-ray LLMs.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
            continue
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.run)
    return parser


def exit_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into `SystemExit(128 + signal)` in this process.

    The default action kills the interpreter without unwinding, so an atomic writer's temporary
    file (`radllm.atomic`) stays behind, multi-MB for a half-written output. Raising instead runs
    every `finally` block on the way out. Forked children (pool workers) keep the default action.
    """
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the chosen command, and turn `RadllmError` into exit status 2.

    `argv` None means this process is the command (arguments from sys.argv), which then also owns
    the termination signals (`exit_on_termination`); library callers and tests pass a list.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:
        exit_on_termination()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except RadllmError as err:
        print(f"radllm {args.command}: error: {err}", file=sys.stderr)
        return 2
