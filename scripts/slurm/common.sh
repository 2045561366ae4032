# Shared setup for radllm's sbatch files: hostfile, rendezvous address and port, environment.
# Sourced (not run) from an sbatch script, from the repository root:
#
#     source "${RADLLM_ROOT:-$SLURM_SUBMIT_DIR}/scripts/slurm/common.sh"
#     radllm_deepspeed radllm/train.py --config "$CONFIG"
#
# (sbatch runs a spooled copy of the batch script, so its own path cannot locate this file;
# submit from the repository root or set RADLLM_ROOT.)
#
# Reads:   SLURM_JOB_ID, SLURM_JOB_NODELIST (set by slurm); GPUS_PER_NODE (default: slurm's
#          SLURM_GPUS_ON_NODE, else the count in SLURM_GPUS_PER_NODE); optional RADLLM_ROOT
#          (default SLURM_SUBMIT_DIR), RADLLM_VENV (a virtualenv to activate), RADLLM_JOB_DIR
#          (default $RADLLM_ROOT/runs/slurm/$SLURM_JOB_ID, must be on a shared file system),
#          MASTER_PORT (default 10000 + SLURM_JOB_ID mod 20000).
# Exports: RADLLM_ROOT, RADLLM_JOB_DIR, RADLLM_HOSTFILE, NNODES, GPUS_PER_NODE, MASTER_ADDR,
#          MASTER_PORT, PYTHONPATH; defines radllm_deepspeed and radllm_signal_ranks.
#
# Environment propagation: every variable exported here or before `sbatch` (which exports the
# submitting shell's environment by default) reaches every rank: `srun --export=ALL` hands the
# batch environment to the launcher on each node, and `deepspeed --no_ssh` starts its local ranks
# with its own environment. (`.deepspeed_env` is read only by deepspeed's ssh/pdsh launcher,
# which is not used here: slurm, not ssh, starts one launcher per node.)

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

if [[ -z "${GPUS_PER_NODE:-}" ]]; then
    if [[ -n "${SLURM_GPUS_ON_NODE:-}" ]]; then
        GPUS_PER_NODE="$SLURM_GPUS_ON_NODE"
    elif [[ -n "${SLURM_GPUS_PER_NODE:-}" ]]; then
        GPUS_PER_NODE="${SLURM_GPUS_PER_NODE##*:}"   # "8" or "h100:8"
    fi
fi
[[ "${GPUS_PER_NODE:-}" =~ ^[1-9][0-9]*$ ]] || _radllm_fail "GPUS_PER_NODE='${GPUS_PER_NODE:-}': expected a positive integer (request --gpus-per-node or export GPUS_PER_NODE)" || return 1
export GPUS_PER_NODE

export RADLLM_JOB_DIR="${RADLLM_JOB_DIR:-$RADLLM_ROOT/runs/slurm/$SLURM_JOB_ID}"
mkdir -p "$RADLLM_JOB_DIR" || return 1
mapfile -t _radllm_hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
(( ${#_radllm_hosts[@]} > 0 )) || _radllm_fail "scontrol show hostnames '$SLURM_JOB_NODELIST' listed no host" || return 1
if [[ -n "${SLURM_JOB_NUM_NODES:-}" && "$SLURM_JOB_NUM_NODES" != "${#_radllm_hosts[@]}" ]]; then
    _radllm_fail "SLURM_JOB_NUM_NODES=$SLURM_JOB_NUM_NODES but '$SLURM_JOB_NODELIST' expands to ${#_radllm_hosts[@]} hosts" || return 1
fi
export NNODES="${#_radllm_hosts[@]}"
export RADLLM_HOSTFILE="$RADLLM_JOB_DIR/hostfile"
# Node order = SLURM_NODEID order, so node rank 0 (where global rank 0 and the rendezvous live)
# is the first host. Written atomically: every node's launcher reads it.
printf '%s slots='"$GPUS_PER_NODE"'\n' "${_radllm_hosts[@]}" > "$RADLLM_HOSTFILE.tmp.$$" && mv -f "$RADLLM_HOSTFILE.tmp.$$" "$RADLLM_HOSTFILE" || return 1
export MASTER_ADDR="${_radllm_hosts[0]}"
# Derived from the job id so that two jobs sharing a node do not collide; below Linux's
# ephemeral range (32768+) so no outgoing connection holds it by chance.
export MASTER_PORT="${MASTER_PORT:-$(( 10000 + SLURM_JOB_ID % 20000 ))}"
unset _radllm_hosts

# radllm_deepspeed SCRIPT [ARGS...]: one deepspeed launcher per node (srun, one task per node),
# each starting GPUS_PER_NODE ranks; node rank = SLURM_NODEID, evaluated on each node. The CPU
# count is passed on explicitly: srun of slurm 22.05+ does not inherit sbatch's --cpus-per-task,
# and the launcher's ranks and data workers would otherwise share one core.
radllm_deepspeed() {
    srun --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 --export=ALL \
        ${SLURM_CPUS_PER_TASK:+--cpus-per-task="$SLURM_CPUS_PER_TASK"} \
        bash -c 'exec deepspeed --no_ssh --node_rank="$SLURM_NODEID" --num_nodes="$NNODES" \
            --num_gpus="$GPUS_PER_NODE" --hostfile="$RADLLM_HOSTFILE" \
            --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" "$@"' radllm-node-launcher "$@"
}

# radllm_signal_ranks SIG SCRIPT: send SIG to the ranks running SCRIPT on every node of the job (not
# to their launchers: `deepspeed.launcher.launch` inserts `--local_rank` right after the script
# in each rank's command line only).
radllm_signal_ranks() {
    srun --overlap --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 \
        pkill "-$1" -f -- "$2 --local_rank" || true
}
