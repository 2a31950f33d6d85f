"""What Fargate work costs: resources x seconds x a price table.  Pure: no I/O, no clock.

Billing rules (https://aws.amazon.com/fargate/pricing/): a task is billed for the vCPU and memory
it *requested*, from the start of its image pull to its stop, rounded up to the next second, with
a one-minute minimum.  The first 20 GB of ephemeral storage are included; storage above that is
billed per GB-hour.  Fargate Spot bills the same way at the Spot rates.

The offline table, :data:`OFFLINE_PRICES`, is dated :data:`TABLE_DATE` (``2026-03-01``).  Source:
the AWS Fargate pricing page for Linux/x86 and Linux/ARM, "Amazon ECS" on-demand and Fargate Spot
rates, USD.  The us-east-1 on-demand rates ($0.04048 per vCPU-hour, $0.004445 per GB-hour; ARM
$0.03238 and $0.00356; storage $0.000111 per GB-hour) match third-party copies of the page dated
March 2026; the other regions' rates and every Spot rate were transcribed without a live check from
this machine; ARM Spot rates are the x86 Spot rates less the 20% ARM discount.  Spot rates move gradually with supply and demand, so Spot figures are indicative.
For current rates use ``starburst_executor.provision.fetch_prices`` (the AWS Pricing API), which
falls back to this table.  A region missing from the table is priced at the highest rate of the
table (:data:`DEFAULT_REGION_KEY`), so a cost guard errs on the side of stopping.

Use::

    from starburst_executor import cost
    est = cost.estimate(50, 4, 8192, 1.0, spot=False, architecture="x86_64", region="us-east-1")
    est.total            # USD for 50 workers x 4 vCPU x 8 GiB for one hour
    done = cost.task_cost(4, 8192, 95.2)   # one task that ran 95.2 s
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "Rates",
    "RegionPrices",
    "PriceTable",
    "Cost",
    "OFFLINE_PRICES",
    "TABLE_DATE",
    "DEFAULT_REGION_KEY",
    "MINIMUM_SECONDS",
    "INCLUDED_STORAGE_GIB",
    "billed_seconds",
    "task_cost",
    "estimate",
]

TABLE_DATE = "2026-03-01"
DEFAULT_REGION_KEY = "default"
MINIMUM_SECONDS = 60
INCLUDED_STORAGE_GIB = 20
ARCHITECTURES = ("x86_64", "arm64")


@dataclasses.dataclass(frozen=True)
class Rates:
    """USD per vCPU-hour and per GB-hour (GB of task memory; Fargate's GB is 1024 MiB)."""

    vcpu_hour: float
    gb_hour: float


@dataclasses.dataclass(frozen=True)
class RegionPrices:
    """The Fargate rates of one region.

    Attributes:
        x86: on-demand Linux/x86 rates.
        arm: on-demand Linux/ARM rates.
        x86_spot: Fargate Spot Linux/x86 rates.
        arm_spot: Fargate Spot Linux/ARM rates.
        storage_gb_hour: USD per GB-hour of ephemeral storage above the included 20 GB.
    """

    x86: Rates
    arm: Rates
    x86_spot: Rates
    arm_spot: Rates
    storage_gb_hour: float

    def rates(self, architecture: str = "x86_64", spot: bool = False) -> Rates:
        """The vCPU and memory rates for ``architecture`` (``x86_64`` or ``arm64``) and ``spot``."""
        arch = _check_architecture(architecture)
        if arch == "arm64":
            return self.arm_spot if spot else self.arm
        return self.x86_spot if spot else self.x86


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """Rates by region, with where they came from.

    Attributes:
        regions: region name -> rates; the key :data:`DEFAULT_REGION_KEY` prices other regions.
        source: where the rates come from (``"offline table"`` or ``"AWS Pricing API"``).
        date: the date the rates were read (ISO format).
    """

    regions: Mapping[str, RegionPrices]
    source: str
    date: str

    def for_region(self, region: str | None) -> RegionPrices:
        """The rates of ``region``; the table's default for a region it does not list."""
        if region and region in self.regions:
            return self.regions[region]
        return self.regions[DEFAULT_REGION_KEY]

    def knows(self, region: str | None) -> bool:
        """Whether ``region`` has its own rates (rather than the default's)."""
        return bool(region) and region in self.regions


@dataclasses.dataclass(frozen=True)
class Cost:
    """The cost of some tasks, in USD, with its breakdown.

    Attributes:
        total: ``vcpu + memory + storage``.
        vcpu: the vCPU part.
        memory: the memory part.
        storage: the ephemeral storage part (storage above the included 20 GB).
        tasks: how many tasks the figure covers.
        billed_seconds: billed seconds per task (after the one-minute minimum).
        rates: the vCPU and memory rates used.
        storage_gb_hour: the storage rate used.
        region: the region asked for; ``source`` says when the table's default priced it.
        architecture: ``x86_64`` or ``arm64``.
        spot: whether Fargate Spot rates were used.
        source: the price table's source and date, for display.
    """

    total: float
    vcpu: float
    memory: float
    storage: float
    tasks: int
    billed_seconds: float
    rates: Rates
    storage_gb_hour: float
    region: str | None
    architecture: str
    spot: bool
    source: str

    @property
    def per_task(self) -> float:
        """USD per task."""
        return self.total / self.tasks if self.tasks else 0.0

    @property
    def per_hour(self) -> float:
        """USD per hour of all the tasks running together."""
        return self.total * 3600.0 / self.billed_seconds if self.billed_seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping of every field and the derived rates."""
        data = dataclasses.asdict(self)
        data["per_task"] = self.per_task
        data["per_hour"] = self.per_hour
        return data


def _region(x86: tuple[float, float], arm: tuple[float, float], x86_spot: tuple[float, float],
            arm_spot: tuple[float, float], storage: float) -> RegionPrices:
    return RegionPrices(Rates(*x86), Rates(*arm), Rates(*x86_spot), Rates(*arm_spot), storage)


_US = _region((0.04048, 0.004445), (0.03238, 0.00356),
              (0.01268354, 0.00139267), (0.01014683, 0.00111413), 0.000111)
_EU_WEST_1 = _region((0.04048, 0.004445), (0.03238, 0.00356),
                     (0.01334053, 0.00146489), (0.01067242, 0.00117191), 0.000111)
_TIER_2 = _region((0.04656, 0.00511), (0.03725, 0.00409),
                  (0.01458821, 0.00160103), (0.01167057, 0.00128082), 0.000122)
_TIER_ASIA = _region((0.05056, 0.00553), (0.04045, 0.00442),
                     (0.01584152, 0.00173263), (0.01267322, 0.00138610), 0.000122)
_SYDNEY = _region((0.04856, 0.00532), (0.03885, 0.00426),
                  (0.01521486, 0.00166684), (0.01217189, 0.00133347), 0.000122)
_SAO_PAULO = _region((0.0696, 0.0076), (0.05568, 0.00608),
                     (0.02180699, 0.00238120), (0.01744559, 0.00190496), 0.000152)


def _highest(regions: Mapping[str, RegionPrices]) -> RegionPrices:
    def top(pick: str) -> Rates:
        rates = [getattr(r, pick) for r in regions.values()]
        return Rates(max(r.vcpu_hour for r in rates), max(r.gb_hour for r in rates))

    return RegionPrices(top("x86"), top("arm"), top("x86_spot"), top("arm_spot"),
                        max(r.storage_gb_hour for r in regions.values()))


_OFFLINE_REGIONS: dict[str, RegionPrices] = {
    "us-east-1": _US,
    "us-east-2": _US,
    "us-west-2": _US,
    "eu-west-1": _EU_WEST_1,
    "us-west-1": _TIER_2,
    "eu-central-1": _TIER_2,
    "eu-west-2": _TIER_2,
    "ap-southeast-1": _TIER_ASIA,
    "ap-northeast-1": _TIER_ASIA,
    "ap-southeast-2": _SYDNEY,
    "sa-east-1": _SAO_PAULO,
}
_OFFLINE_REGIONS[DEFAULT_REGION_KEY] = _highest(_OFFLINE_REGIONS)

OFFLINE_PRICES = PriceTable(
    regions=MappingProxyType(_OFFLINE_REGIONS), source="offline table", date=TABLE_DATE
)


def _check_architecture(architecture: str) -> str:
    aliases = {"x86_64": "x86_64", "x86": "x86_64", "amd64": "x86_64", "arm64": "arm64",
               "arm": "arm64", "aarch64": "arm64"}
    try:
        return aliases[architecture.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"architecture={architecture!r} is not one of {', '.join(ARCHITECTURES)}"
        ) from None


def billed_seconds(seconds: float) -> float:
    """Seconds Fargate bills for a task that ran ``seconds``: rounded up, at least one minute."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    # Timestamps converted through floats carry noise; it must not add a billed second.
    return float(max(MINIMUM_SECONDS, math.ceil(round(seconds, 6))))


def task_cost(
    cpu: float,
    memory_mib: int,
    seconds: float,
    *,
    spot: bool = False,
    architecture: str = "x86_64",
    region: str | None = None,
    ephemeral_storage_gib: int = INCLUDED_STORAGE_GIB,
    prices: PriceTable | None = None,
) -> Cost:
    """The cost of one task of ``cpu`` vCPU and ``memory_mib`` MiB that ran ``seconds``.

    Args:
        cpu: vCPUs requested (0.25 to 16).
        memory_mib: memory requested, MiB.
        seconds: run time, from image pull to stop; billed rounded up, at least 60 s.
        spot: priced at Fargate Spot rates.
        architecture: ``"x86_64"`` or ``"arm64"``.
        region: AWS region; ``None`` or an unlisted region uses the table's default.
        ephemeral_storage_gib: the task's ephemeral storage; only GiB above 20 are billed.
        prices: a :class:`PriceTable`, e.g. from ``fetch_prices``; default :data:`OFFLINE_PRICES`.

    Returns:
        A :class:`Cost` with ``tasks == 1``.
    """
    return _cost(1, cpu, memory_mib, billed_seconds(seconds), spot=spot,
                 architecture=architecture, region=region,
                 ephemeral_storage_gib=ephemeral_storage_gib, prices=prices)


def estimate(
    workers: int,
    cpu: float,
    memory_mib: int,
    hours: float,
    *,
    spot: bool = False,
    architecture: str = "x86_64",
    region: str | None = None,
    ephemeral_storage_gib: int = INCLUDED_STORAGE_GIB,
    prices: PriceTable | None = None,
) -> Cost:
    """The cost of ``workers`` tasks of ``cpu`` vCPU and ``memory_mib`` MiB running ``hours`` each.

    Each task is billed at least one minute.  Arguments are those of :func:`task_cost`.

    Returns:
        A :class:`Cost` with ``tasks == workers``; ``per_hour`` is the cost of one hour of all.
    """
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    if hours < 0 or not math.isfinite(hours):
        raise ValueError(f"hours must be a finite number >= 0, got {hours!r}")
    return _cost(workers, cpu, memory_mib, billed_seconds(hours * 3600.0), spot=spot,
                 architecture=architecture, region=region,
                 ephemeral_storage_gib=ephemeral_storage_gib, prices=prices)


def _cost(
    tasks: int,
    cpu: float,
    memory_mib: int,
    seconds: float,
    *,
    spot: bool,
    architecture: str,
    region: str | None,
    ephemeral_storage_gib: int,
    prices: PriceTable | None,
) -> Cost:
    if not cpu > 0:
        raise ValueError(f"cpu must be positive, got {cpu!r}")
    if not memory_mib > 0:
        raise ValueError(f"memory_mib must be positive, got {memory_mib!r}")
    table = prices or OFFLINE_PRICES
    arch = _check_architecture(architecture)
    region_prices = table.for_region(region)
    rates = region_prices.rates(arch, spot)
    hours = seconds / 3600.0
    vcpu = tasks * cpu * rates.vcpu_hour * hours
    memory = tasks * (memory_mib / 1024.0) * rates.gb_hour * hours
    extra_storage = max(0, ephemeral_storage_gib - INCLUDED_STORAGE_GIB)
    storage = tasks * extra_storage * region_prices.storage_gb_hour * hours
    return Cost(
        total=vcpu + memory + storage,
        vcpu=vcpu,
        memory=memory,
        storage=storage,
        tasks=tasks,
        billed_seconds=seconds,
        rates=rates,
        storage_gb_hour=region_prices.storage_gb_hour,
        region=region,
        architecture=arch,
        spot=spot,
        source=f"{table.source}, {table.date}"
        + ("" if table.knows(region) else f" (default rates: {region or 'no region'} not listed)"),
    )
