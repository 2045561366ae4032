# Shared setup for radllm's sbatch files: rendezvous address and port, environment, and a job
# runner that turns a pre-emption into a saved checkpoint and a requeue.
# Sourced (not run) from an sbatch script, from the repository root:
#
#     source "${RADLLM_ROOT:-$SLURM_SUBMIT_DIR}/scripts/slurm/common.sh"
#     radllm_run_job train --config "$CONFIG" --resume auto
#
# (sbatch runs a spooled copy of the batch script, so its own path cannot locate this file;
# submit from the repository root or set RADLLM_ROOT.)
#
# Reads:   SLURM_JOB_ID, SLURM_JOB_NODELIST (set by slurm); GPUS_PER_NODE (default: slurm's
#          SLURM_GPUS_ON_NODE, else the count in SLURM_GPUS_PER_NODE); optional RADLLM_ROOT
#          (default SLURM_SUBMIT_DIR), RADLLM_VENV (a virtualenv to activate), MASTER_PORT
#          (default 10000 + SLURM_JOB_ID mod 20000), RADLLM_PYTHON (default: python on PATH),
#          RADLLM_GRACE (seconds `radllm launch` gives the other ranks after one fails; default 60).
# Exports: RADLLM_ROOT, RADLLM_PYTHON, NNODES, GPUS_PER_NODE, MASTER_ADDR, MASTER_PORT,
#          PYTHONPATH; defines radllm_run_job.
#
# Environment propagation: every variable exported here or before `sbatch` (which exports the
# submitting shell's environment by default) reaches every rank: `srun --export=ALL` hands the
# batch environment to `radllm launch` on each node, which starts its ranks with it.

_radllm_fail() { echo "radllm slurm: $*" >&2; return 1; }

: "${SLURM_JOB_ID:?radllm slurm: SLURM_JOB_ID is not set (run inside an sbatch/salloc allocation)}"
: "${SLURM_JOB_NODELIST:?radllm slurm: SLURM_JOB_NODELIST is not set (run inside an sbatch/salloc allocation)}"

export RADLLM_ROOT="${RADLLM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
[[ -f "$RADLLM_ROOT/radllm/train.py" ]] || _radllm_fail "RADLLM_ROOT=$RADLLM_ROOT is not the radllm repository (no radllm/train.py); submit from the repository root or set RADLLM_ROOT" || return 1
cd "$RADLLM_ROOT" || return 1
if [[ -n "${RADLLM_VENV:-}" ]]; then
    # shellcheck disable=SC1091
    source "$RADLLM_VENV/bin/activate" || _radllm_fail "cannot activate RADLLM_VENV=$RADLLM_VENV" || return 1
fi
export PYTHONPATH="$RADLLM_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export RADLLM_PYTHON="${RADLLM_PYTHON:-python}"

if [[ -z "${GPUS_PER_NODE:-}" ]]; then
    if [[ -n "${SLURM_GPUS_ON_NODE:-}" ]]; then
        GPUS_PER_NODE="$SLURM_GPUS_ON_NODE"
    elif [[ -n "${SLURM_GPUS_PER_NODE:-}" ]]; then
        GPUS_PER_NODE="${SLURM_GPUS_PER_NODE##*:}"   # "8" or "h100:8"
    fi
fi
[[ "${GPUS_PER_NODE:-}" =~ ^[1-9][0-9]*$ ]] || _radllm_fail "GPUS_PER_NODE='${GPUS_PER_NODE:-}': expected a positive integer (request --gpus-per-node or export GPUS_PER_NODE)" || return 1
export GPUS_PER_NODE

mapfile -t _radllm_hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
(( ${#_radllm_hosts[@]} > 0 )) || _radllm_fail "scontrol show hostnames '$SLURM_JOB_NODELIST' listed no host" || return 1
if [[ -n "${SLURM_JOB_NUM_NODES:-}" && "$SLURM_JOB_NUM_NODES" != "${#_radllm_hosts[@]}" ]]; then
    _radllm_fail "SLURM_JOB_NUM_NODES=$SLURM_JOB_NUM_NODES but '$SLURM_JOB_NODELIST' expands to ${#_radllm_hosts[@]} hosts" || return 1
fi
export NNODES="${#_radllm_hosts[@]}"
# Node rank 0 (global rank 0, the rendezvous) is the first host: srun's SLURM_NODEID order.
export MASTER_ADDR="${_radllm_hosts[0]}"
# Derived from the job id so that two jobs sharing a node do not collide; below Linux's
# ephemeral range (32768+) so no outgoing connection holds it by chance.
export MASTER_PORT="${MASTER_PORT:-$(( 10000 + SLURM_JOB_ID % 20000 ))}"
unset _radllm_hosts

# radllm_run_job SUBCOMMAND [ARGS...]: `radllm launch` once per node (srun, one task per node),
# each starting GPUS_PER_NODE ranks of `radllm SUBCOMMAND ARGS` (node rank = SLURM_NODEID,
# evaluated on each node), seen through a stop. The CPU count is passed on explicitly: srun of
# slurm 22.05+ does not inherit sbatch's --cpus-per-task, and the ranks and their data workers
# would otherwise share one core.
#
# A USR1 to this script (`#SBATCH --signal=B:USR1@LEAD`: LEAD seconds before the time limit) or
# a SIGTERM (scancel, pre-emption: slurm sends it to this script and to every process of every
# step, and SIGKILL after KillWait) is passed to srun, which forwards it to each node's `radllm
# launch`; the ranks finish the step in progress, save, and the launchers exit 75 (EX_TEMPFAIL).
# On 75 the job is requeued (`scontrol requeue`; it resumes where it stopped); any other status
# is the job's. A requeued job waits in the queue: `scancel` it there to stop for good.
RADLLM_PREEMPTED_EXIT_CODE=75
radllm_run_job() {
    local srun_pid status stop=""
    srun --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 --export=ALL \
        ${SLURM_CPUS_PER_TASK:+--cpus-per-task="$SLURM_CPUS_PER_TASK"} \
        bash -c 'exec "$RADLLM_PYTHON" -m radllm launch --nnodes "$NNODES" --node-rank "$SLURM_NODEID" \
            --nproc-per-node "$GPUS_PER_NODE" --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
            --grace "${RADLLM_GRACE:-60}" -- "$RADLLM_PYTHON" -m radllm "$@"' radllm-node "$@" &
    srun_pid=$!  # srun itself (a simple command in the background), so a signal reaches it
    # shellcheck disable=SC2064  # srun_pid is fixed now
    trap "stop=USR1; echo 'radllm slurm: time-limit notice (USR1): the ranks save at the next step and stop' >&2; kill -USR1 $srun_pid 2>/dev/null || true" USR1
    trap "stop=TERM; echo 'radllm slurm: SIGTERM (scancel or pre-emption): the ranks save at the next step and stop' >&2; kill -TERM $srun_pid 2>/dev/null || true" TERM
    while true; do  # `wait` returns early (128 + signal) whenever a trap runs; srun's own exit ends the loop
        wait "$srun_pid" && status=0 || status=$?
        kill -0 "$srun_pid" 2>/dev/null || break
    done
    if (( status > 128 )); then  # srun ended while a trap ran: bash kept its own status
        wait "$srun_pid" && status=0 || status=$?
    fi
    trap - USR1 TERM
    if (( status == RADLLM_PREEMPTED_EXIT_CODE )); then
        echo "radllm slurm: the ranks saved and stopped${stop:+ after $stop}; requeueing job $SLURM_JOB_ID" >&2
        scontrol requeue "$SLURM_JOB_ID" || {
            echo "radllm slurm: scontrol requeue $SLURM_JOB_ID failed; the checkpoint is saved: resubmit the same job to continue" >&2
            return "$RADLLM_PREEMPTED_EXIT_CODE"
        }
        return 0
    fi
    return "$status"
}
