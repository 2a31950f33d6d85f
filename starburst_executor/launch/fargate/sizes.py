"""Which task sizes Fargate accepts: pure checks, run before anything is launched.

Fargate takes a fixed set of (vCPU, memory) pairs (Linux tasks)::

    vCPU   memory
    0.25   0.5, 1, 2 GB
    0.5    1 - 4 GB in 1 GB steps
    1      2 - 8 GB in 1 GB steps
    2      4 - 16 GB in 1 GB steps
    4      8 - 30 GB in 1 GB steps
    8      16 - 60 GB in 4 GB steps
    16     32 - 120 GB in 8 GB steps

and 20 (the default, included in the price) or 21 - 200 GiB of ephemeral storage.  Memory is in
MiB throughout (``config.parse_memory``).
"""

from __future__ import annotations

import re

from ...errors import ConfigError

__all__ = [
    "FARGATE_MEMORY",
    "EPHEMERAL_RANGE",
    "cpu_units",
    "validate_size",
    "validate_ephemeral_storage",
    "validate_region",
]

_GIB = 1024

FARGATE_MEMORY: dict[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: tuple(range(1 * _GIB, 4 * _GIB + 1, _GIB)),
    1.0: tuple(range(2 * _GIB, 8 * _GIB + 1, _GIB)),
    2.0: tuple(range(4 * _GIB, 16 * _GIB + 1, _GIB)),
    4.0: tuple(range(8 * _GIB, 30 * _GIB + 1, _GIB)),
    8.0: tuple(range(16 * _GIB, 60 * _GIB + 1, 4 * _GIB)),
    16.0: tuple(range(32 * _GIB, 120 * _GIB + 1, 8 * _GIB)),
}
"""vCPUs -> the memory sizes (MiB) Fargate accepts with them."""

EPHEMERAL_DEFAULT = 20
"""The ephemeral storage every Fargate task has without asking, GiB (included in the price)."""

EPHEMERAL_RANGE = (21, 200)
"""Smallest and largest ephemeral storage a Fargate task can ask for, GiB."""

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$")


def _gb(mib: int) -> str:
    value = mib / _GIB
    return f"{value:g}GB"


def _cpu_text(cpu: float) -> str:
    return f"{cpu:g}"


def cpu_units(cpu: float) -> int:
    """ECS CPU units (1024 per vCPU) of a valid Fargate vCPU count.

    Raises:
        ConfigError: ``cpu`` is not one of 0.25, 0.5, 1, 2, 4, 8, 16.
    """
    if float(cpu) not in FARGATE_MEMORY:
        choices = ", ".join(_cpu_text(c) for c in FARGATE_MEMORY)
        raise ConfigError(f"cpu={cpu!r} is not a Fargate size: choose one of {choices} (vCPUs)")
    return int(float(cpu) * 1024)


def _describe(sizes: tuple[int, ...]) -> str:
    if len(sizes) <= 4:
        return ", ".join(_gb(m) for m in sizes)
    step = sizes[1] - sizes[0]
    return f"{_gb(sizes[0])} to {_gb(sizes[-1])} in {_gb(step)} steps"


def validate_size(cpu: float, memory: int) -> tuple[int, int]:
    """Check a (vCPU, memory MiB) pair; return it as ECS wants it: (CPU units, MiB).

    Raises:
        ConfigError: not a pair Fargate runs; the message lists the memory sizes that go with
            ``cpu`` and the vCPU counts that accept ``memory``.
    """
    units = cpu_units(cpu)
    sizes = FARGATE_MEMORY[float(cpu)]
    if memory not in sizes:
        fitting = [_cpu_text(c) for c, ms in FARGATE_MEMORY.items() if memory in ms]
        hint = (
            f"; or keep memory={_gb(memory)} with cpu={' or '.join(fitting)}" if fitting
            else "; that memory fits no Fargate size"
        )
        raise ConfigError(
            f"memory={_gb(memory)} ({memory} MiB) does not go with cpu={_cpu_text(cpu)} on "
            f"Fargate: with {_cpu_text(cpu)} vCPU choose memory {_describe(sizes)}{hint}"
        )
    return units, memory


def validate_ephemeral_storage(gib: int) -> int:
    """Check the ephemeral storage size (GiB).

    Raises:
        ConfigError: neither the default 20 GiB nor 21-200 GiB.
    """
    low, high = EPHEMERAL_RANGE
    if not isinstance(gib, int) or not (gib == EPHEMERAL_DEFAULT or low <= gib <= high):
        raise ConfigError(
            f"ephemeral_storage={gib!r} GiB is not possible on Fargate: choose "
            f"{EPHEMERAL_DEFAULT} (the default) or a whole number of GiB from {low} to {high}"
        )
    return gib


def validate_region(region: str) -> str:
    """Check that ``region`` looks like an AWS region name (``us-east-1``, ``eu-west-3``).

    Raises:
        ConfigError: it does not; the message gives examples.
    """
    if not _REGION.match(region or ""):
        raise ConfigError(
            f"region={region!r} is not an AWS region name: write it like us-east-1, eu-west-1, "
            "ap-southeast-2 (`aws ec2 describe-regions` lists them)"
        )
    return region
