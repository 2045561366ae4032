"""DeepSpeed's CPU shared-memory comm op, made safe to build once and load from many launches.

On CPU every rank of every `deepspeed` launch loads the `deepspeed_shm_comm` extension through
torch's JIT loader, which guards the build directory with a `lock` file created with O_EXCL; the
others poll until it disappears, with no timeout and no output. A launch killed while one of its
ranks holds that file (a scancel, a test timeout, Ctrl-C during the first ~60-s build) leaves it
behind, and every later launch on the machine then waits forever. The op also creates one
shared-memory segment per rank (/dev/shm/deepspeed_allreduce_buffer_*, 69 MB each) and never
unlinks it, so each launch leaks RAM until reboot.

So radllm:
1. keeps the build in a directory it owns (`<venv>/torch_extensions` unless TORCH_EXTENSIONS_DIR
   is set), built once at install (`radllm build-ops`, run by `make venv`) rather than raced by
   the first concurrent launches;
2. before a launch loads an op, removes a build lock that no live process holds, waits for a live
   builder at most `RADLLM_OP_LOCK_TIMEOUT` seconds (default 300), and then fails naming the file;
3. unlinks this rank's segment name once every rank has mapped the segments (the memory stays
   mapped until the ranks exit, and is freed even when they are killed).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from radllm.errors import RadllmError

log = logging.getLogger(__name__)

SHM_OP_NAME = "deepspeed_shm_comm"
LOCK_TIMEOUT_ENV = "RADLLM_OP_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 300.0
#: DeepSpeed's name for a rank's segment: prefix_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank> (shm.cpp).
SHM_SEGMENT_PREFIX = "deepspeed_allreduce_buffer"


def extensions_dir() -> Path:
    """The torch extensions root radllm builds into, exported as TORCH_EXTENSIONS_DIR.

    A user's TORCH_EXTENSIONS_DIR wins; otherwise the installation's own prefix (the venv), so a
    lock or a half-built op from another project or another torch build never blocks this one.
    """
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        prefix = Path(sys.prefix)
        if os.access(prefix, os.W_OK):
            root = prefix / "torch_extensions"
        else:
            from torch.utils.cpp_extension import get_default_build_root

            root = Path(get_default_build_root()) / "radllm"
        os.environ["TORCH_EXTENSIONS_DIR"] = str(root)
    return Path(os.environ["TORCH_EXTENSIONS_DIR"])


def lock_holders(lock: Path) -> list[int]:
    """Process ids that have `lock` open (torch's builder keeps its descriptor open until done)."""
    target = str(lock.resolve())
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            descriptors = list((proc / "fd").iterdir())
        except OSError:  # exited, or another user's process
            continue
        for fd in descriptors:
            try:
                if os.readlink(fd) == target:
                    holders.append(int(proc.name))
                    break
            except OSError:
                continue
    return holders


def _identity(path: Path) -> tuple[int, int]:
    """Inode and change time: a lock re-created at the same path (even on a reused inode) differs."""
    stat = path.stat()
    return stat.st_ino, stat.st_ctime_ns


def wait_for_build_lock(build_dir: Path, timeout_s: float, poll_s: float = 1.0) -> None:
    """Return once `build_dir/lock` is gone: removed at once when stale, awaited when a builder lives.

    Raises:
        RadllmError: a live process still held the lock after `timeout_s` seconds.
    """
    lock = build_dir / "lock"
    start = time.monotonic()
    while True:
        try:
            seen = _identity(lock)
        except FileNotFoundError:
            return
        holders = lock_holders(lock)
        if not holders:
            try:
                # Another rank may have cleared it and a builder taken a new one since the scan.
                if _identity(lock) == seen:
                    lock.unlink()
                    log.warning("removed a stale build lock %s (no process held it; a killed launch left it)", lock)
            except FileNotFoundError:
                pass
            continue
        waited = time.monotonic() - start
        if waited >= timeout_s:
            raise RadllmError(
                f"waited {waited:.0f} s for the DeepSpeed op build lock {lock}, held by process(es) "
                f"{', '.join(map(str, holders))}. If no build is running (e.g. those processes are hung), "
                f"stop them or delete {lock}; {LOCK_TIMEOUT_ENV} sets how long to wait"
            )
        time.sleep(poll_s)


def lock_timeout_s() -> float:
    """`RADLLM_OP_LOCK_TIMEOUT` in seconds (a positive number), default 300."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise RadllmError(f"{LOCK_TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def prepare_op_builds() -> Path:
    """Point torch at radllm's extensions directory and clear every op build lock in it (stale ones
    at once, live ones within the timeout); call before DeepSpeed loads an op. Returns the root."""
    root = extensions_dir()
    timeout = lock_timeout_s()
    for lock in sorted(root.glob("*/lock")):
        wait_for_build_lock(lock.parent, timeout)
    return root


def build_shm_op() -> Path | None:
    """Build (or find up to date) the op for the current DeepSpeed accelerator.

    Returns its build directory, or None where the accelerator has no such op (GPUs use NCCL).
    """
    build_dir = prepare_op_builds() / SHM_OP_NAME
    from deepspeed.accelerator import get_accelerator
    from deepspeed.ops import __compatible_ops__

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not __compatible_ops__.get(builder.NAME, False):
        return None
    builder.load(verbose=False)
    return build_dir


def build_cpu_adam_op() -> bool:
    """Build (or find up to date) DeepSpeedCPUAdam's op, used when ZeRO offloads the optimizer; False where it cannot be built."""
    prepare_op_builds()
    from deepspeed.ops.op_builder import CPUAdamBuilder

    builder = CPUAdamBuilder()
    if not builder.is_compatible(verbose=False):
        return False
    builder.load(verbose=False)
    return True


def release_shm_segment(rank: int) -> bool:
    """Unlink this rank's segment name; call after a barrier that follows process-group init.

    By then every rank has opened every segment (DeepSpeed maps them all during init), so the
    name is no longer needed and unlinking it makes the kernel free the memory when the ranks exit.
    Returns whether there was a segment to unlink (none on GPU or across nodes).
    """
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    segment = Path("/dev/shm") / f"{SHM_SEGMENT_PREFIX}_{os.getuid()}_{addr}_{port}_{rank}"
    try:
        segment.unlink()
    except FileNotFoundError:
        return False
    return True
