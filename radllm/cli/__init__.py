"""The `radllm` console command.

Each subcommand is one module in this package that defines:

    NAME: str                      # the subcommand, e.g. "phantoms"
    HELP: str                      # one line for `radllm --help`
    def configure(parser) -> None  # add its arguments
    def run(args) -> int           # do the work by calling library functions; return exit status

Modules are discovered, so adding a command never touches this file. A module may instead define
`register(subparsers)` when it has nested subcommands (e.g. `radllm prepare iu-xray`).

Every job is a subcommand, multi-rank ones included: `radllm generate|tokenize|vq-train|train` run as
one process, and as one rank each under a launcher (`deepspeed --module radllm generate ...`; see
`radllm.ranks`). `radllm/train.py` and `tools/*.py` are shims that forward their arguments here.
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
from radllm.preemption import PREEMPTED_EXIT_CODE, JobStopped


def build_parser() -> argparse.ArgumentParser:
    """Collect every command module under `radllm.cli` into one argparse parser."""
    parser = argparse.ArgumentParser(
        prog="radllm",
        description="radllm: tokenizer building, training, generation and evaluation for chest X-ray LLMs.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    # The deepspeed launcher passes `--local_rank=N` first on each rank's command line; ranks are read
    # from the environment it also sets (LOCAL_RANK), so the option is only accepted.
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    # A command whose process groups must not be finalized at exit (`radllm train`) sets this to False.
    parser.set_defaults(finalize_at_exit=True)
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


def add_run_config(parser: argparse.ArgumentParser, config_example: str, override_example: str) -> None:
    """`--config FILE` and repeatable `--set KEY=VALUE`: how every trainer takes its run config (`radllm.config.load_config`)."""
    parser.add_argument("--config", required=True, help=f"YAML run config (see {config_example})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config key, e.g. --set {override_example} (repeatable)")


def add_dist_timeout(parser: argparse.ArgumentParser) -> None:
    """The `--dist-timeout-hours` option of the multi-rank jobs whose ranks get uneven shares of the work."""
    parser.add_argument("--dist-timeout-hours", type=float, default=24.0,
                        help="under a launcher: how long finished ranks wait for the slowest one "
                             "(default 24; torch's own default of 30 min is too short)")


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


def subcommand_argv(command: str, argv: Sequence[str]) -> list[str]:
    """The `radllm` arguments for a launch shim's own (`radllm/train.py` -> `train`, `tools/generate.py` -> `generate`).

    The subcommand goes after the `--local_rank=N` that the deepspeed launcher puts right after the
    script, where the top-level parser takes it.
    """
    launcher = list(argv[:1]) if argv[:1] and argv[0].startswith("--local_rank") else []
    return [*launcher, command, *argv[len(launcher):]]


def exit_now(status: int) -> None:
    """Leave without interpreter finalization once the work is done and every rank has met.

    After the final barrier and `destroy_process_group`, the C++ destructors of process groups
    and of the engine's communication objects still run at interpreter exit, and one of them can
    abort a rank whose peer has already closed its sockets ("terminate called without an active
    exception": a 2-rank CPU run that had finished and exported exited 250 this way in CI).
    Nothing is left to finalize by then (metrics and tensorboard files are closed, the export and
    checkpoints are written atomically), so flush the streams and logs and exit directly.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: Sequence[str] | None = None, command: str | None = None) -> int:
    """Parse arguments, run the chosen command, and turn `RadllmError` into exit status 2.

    `argv` None means this process is the command (arguments from sys.argv), which then also owns
    the termination signals (`exit_on_termination`) and its exit; library callers and tests pass a
    list. `command` is the subcommand of a launch shim, whose arguments are that subcommand's own.
    """
    parser = build_parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(subcommand_argv(command, arguments) if command else arguments)
    if argv is None:
        exit_on_termination()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    rank = f" (rank {os.environ.get('RANK', 0)})" if int(os.environ.get("WORLD_SIZE", 1)) > 1 else ""
    try:
        status = int(args.handler(args) or 0)
    except RadllmError as err:
        print(f"radllm {args.command}{rank}: error: {err}", file=sys.stderr)
        status = 2
    except JobStopped as stop:  # a stop request answered at a clean boundary: requeue and rerun to continue
        print(f"radllm {args.command}{rank}: {stop}", file=sys.stderr)
        status = PREEMPTED_EXIT_CODE
    if argv is None and not args.finalize_at_exit:
        exit_now(status)
    return status
