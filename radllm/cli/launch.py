"""`radllm launch`: this node's ranks of a multi-rank job, stopped cleanly whoever is signalled.

    DS_ACCELERATOR=cpu radllm launch --nproc-per-node 2 -- radllm train --config configs/demo/stage2.yaml --resume auto
    srun radllm launch --nnodes 4 --node-rank "$SLURM_NODEID" --master-addr HEAD --nproc-per-node 8 -- radllm train --config C
"""

from __future__ import annotations

import argparse

from radllm.launcher import LaunchPlan, launch

NAME = "launch"
HELP = "start this node's ranks of a job (train, generate, tokenize, vq-train) and pass a stop on to them: exit 75 when pre-empted"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and DeepSpeed's CROSS_RANK, "
        "CROSS_SIZE, LOCAL_SIZE) for each rank. SIGTERM, SIGINT, SIGUSR1 or SIGHUP to this launcher, to the ranks or to "
        "the whole process group asks the ranks to checkpoint at the next step and stop; the launcher then exits 75 "
        "(requeue). A second Ctrl-C stops without a checkpoint. README 'Multi-node (slurm)'."
    )
    parser.add_argument("--nproc-per-node", type=int, default=1, help="ranks on this node (GPUs per node; default 1)")
    parser.add_argument("--nnodes", type=int, default=1, help="nodes in the job (default 1)")
    parser.add_argument("--node-rank", type=int, default=0, help="this node's index, 0..nnodes-1 (slurm: $SLURM_NODEID)")
    parser.add_argument("--master-addr", default="127.0.0.1", help="address of node 0 (default 127.0.0.1)")
    parser.add_argument("--master-port", type=int, default=29500, help="rendezvous port on node 0 (default 29500)")
    parser.add_argument("--grace", type=float, default=60.0, metavar="SECONDS",
                        help="after a rank fails, how long the others may take to stop before they are killed (default 60)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the rank command, after --")


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    plan = LaunchPlan(command, args.nproc_per_node, args.nnodes, args.node_rank, args.master_addr, args.master_port)
    return launch(plan, args.grace)
