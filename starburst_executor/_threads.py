"""How many threads a worker's numeric libraries may use: its share of the CPUs, not the host's.

BLAS and OpenMP size their thread pools from the cores they see.  Two local workers on an
8-core laptop would each start 8 BLAS threads, and a container limited to 1 CPU on a 64-core
host would start 64: either way the threads fight over the cores and a call runs many times
slower than it would alone.  A worker therefore caps the usual thread-pool variables to its CPU
share before it unpickles any user code (the libraries read them once, at import), unless the
user set them.

The share is, in order: ``STARBURST_CPU_SHARE`` (set by the local launcher to the cores divided
among its workers, and by the container launchers to the ``cpu`` setting), the CPU quota of the
worker's cgroup (a container limited with ``--cpus``), or the CPUs the process may run on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping

__all__ = ["THREAD_VARIABLES", "ENV_CPU_SHARE", "cpu_share", "cap_thread_pools"]

ENV_CPU_SHARE = "STARBURST_CPU_SHARE"

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

_CGROUP_V2 = "/sys/fs/cgroup/cpu.max"
_CGROUP_V1 = ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_cpus(v2: str = _CGROUP_V2, v1: tuple[str, str] = _CGROUP_V1) -> float | None:
    """The CPU quota of this process's cgroup in CPUs, or ``None`` when unlimited or unknown."""
    text = _read(v2)
    if text:
        quota, _, period = text.partition(" ")
        if quota != "max" and period:
            try:
                return int(quota) / int(period)
            except ValueError:
                return None
        return None
    try:
        cfs_quota, cfs_period = int(_read(v1[0]) or ""), int(_read(v1[1]) or "")
    except ValueError:
        return None
    return cfs_quota / cfs_period if cfs_quota > 0 and cfs_period > 0 else None


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_share(env: Mapping[str, str], *, cgroup_cpus: float | None = None,
              usable: int | None = None) -> int:
    """The whole number of CPUs this worker may use (at least 1)."""
    given = env.get(ENV_CPU_SHARE)
    if given:
        try:
            return max(1, math.floor(float(given)))
        except ValueError:
            pass
    limit = _cgroup_cpus() if cgroup_cpus is None else cgroup_cpus
    cpus = usable if usable is not None else _usable_cpus()
    if limit is not None:
        cpus = min(cpus, math.floor(limit))
    return max(1, cpus)


def cap_thread_pools(env: MutableMapping[str, str], share: int | None = None) -> dict[str, str]:
    """Set each thread-pool variable the user left unset to the CPU share; return what was set."""
    threads = str(cpu_share(env) if share is None else share)
    changed = {name: threads for name in THREAD_VARIABLES if not env.get(name)}
    env.update(changed)
    return changed
