"""Current Fargate rates from the AWS Pricing API, with the offline table as the fallback.

Kept apart from :mod:`starburst_executor.cost` so that module stays pure.  The Pricing API is
served from us-east-1 only; moto does not implement it, so under a moto server (and offline)
:func:`fetch_prices` returns the offline table with the reason in its ``source``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .. import _aws
from ..cost import OFFLINE_PRICES, PriceTable, Rates, RegionPrices

__all__ = ["fetch_prices", "parse_products"]

# Usage types without their region prefix ("USE1-", "EU-", ...), per price field.
_USAGE_TYPES = {
    "Fargate-vCPU-Hours:perCPU": ("x86", "vcpu_hour"),
    "Fargate-GB-Hours": ("x86", "gb_hour"),
    "Fargate-ARM-vCPU-Hours:perCPU": ("arm", "vcpu_hour"),
    "Fargate-ARM-GB-Hours": ("arm", "gb_hour"),
    "SpotUsage-Fargate-vCPU-Hours:perCPU": ("x86_spot", "vcpu_hour"),
    "SpotUsage-Fargate-GB-Hours": ("x86_spot", "gb_hour"),
    "SpotUsage-Fargate-ARM-vCPU-Hours:perCPU": ("arm_spot", "vcpu_hour"),
    "SpotUsage-Fargate-ARM-GB-Hours": ("arm_spot", "gb_hour"),
    "Fargate-EphemeralStorage-GB-Hours": ("storage", "gb_hour"),
}
_REGION_PREFIX = re.compile(r"^[A-Z]{2,4}[0-9]?-(?=(Fargate|SpotUsage)-)")


def fetch_prices(
    region: str,
    *,
    client: Any = None,
    fallback: PriceTable = OFFLINE_PRICES,
    timeout: float = 5.0,
    today: datetime.date | None = None,
) -> PriceTable:
    """Read the Fargate rates of ``region`` from the AWS Pricing API.

    Args:
        region: the AWS region to price.
        client: a boto3 ``pricing`` client; by default one in us-east-1 with short timeouts and
            no retries (a cost estimate must not hang on an unreachable endpoint).
        fallback: the table used for what the API does not give, and entirely when it fails.
        timeout: connect and read timeout of the default client, seconds.
        today: the date recorded in the result (default: today).

    Returns:
        ``fallback`` with ``region`` replaced by the API's rates (``source`` "AWS Pricing API");
        or ``fallback`` itself, its ``source`` saying why the API was not used.  Rates the API
        lacks for the region (e.g. ARM Spot) are taken from ``fallback``.
    """
    try:
        if client is None:
            # Short timeouts and no retry: a cost estimate must not hang on an unreachable API.
            client = _aws.client("pricing", "us-east-1", max_attempts=1, timeout=timeout)
        products = list(_get_products(client, region))
    except Exception as exc:
        if not _aws.is_aws_error(exc):
            raise
        return _fallen_back(fallback, f"Pricing API unavailable: {_short(exc)}")
    found = parse_products(products)
    if not {"x86", "arm"} <= {kind for kind, _ in found} or not _complete(found, ("x86", "arm")):
        return _fallen_back(fallback, f"Pricing API has no Fargate rates for {region}")
    base = fallback.for_region(region)

    def rates(kind: str) -> Rates:
        default = getattr(base, kind)
        return Rates(found.get((kind, "vcpu_hour"), default.vcpu_hour),
                     found.get((kind, "gb_hour"), default.gb_hour))

    prices = RegionPrices(
        x86=rates("x86"),
        arm=rates("arm"),
        x86_spot=rates("x86_spot"),
        arm_spot=rates("arm_spot"),
        storage_gb_hour=found.get(("storage", "gb_hour"), base.storage_gb_hour),
    )
    regions = dict(fallback.regions)
    regions[region] = prices
    date = (today or datetime.date.today()).isoformat()
    return dataclasses.replace(fallback, regions=regions, source="AWS Pricing API", date=date)


def parse_products(products: Iterable[str | Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """Map ``(kind, field)`` to USD from Pricing API ``PriceList`` entries (JSON text or dicts).

    ``kind`` is ``x86``, ``arm``, ``x86_spot``, ``arm_spot`` or ``storage``; ``field`` is
    ``vcpu_hour`` or ``gb_hour``.  Entries that are not Linux Fargate usage are ignored.
    """
    found: dict[tuple[str, str], float] = {}
    for entry in products:
        product = json.loads(entry) if isinstance(entry, str) else entry
        usage = str(product.get("product", {}).get("attributes", {}).get("usagetype", ""))
        key = _USAGE_TYPES.get(_REGION_PREFIX.sub("", usage))
        if key is None:
            continue
        price = _on_demand_usd(product)
        if price is not None and price > 0:
            found[key] = price
    return found


def _complete(found: Mapping[tuple[str, str], float], kinds: Iterable[str]) -> bool:
    return all((kind, field) in found for kind in kinds for field in ("vcpu_hour", "gb_hour"))


def _on_demand_usd(product: Mapping[str, Any]) -> float | None:
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is not None:
                try:
                    return float(usd)
                except ValueError:
                    return None
    return None


def _get_products(client: Any, region: str) -> Iterable[str]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "ServiceCode": "AmazonECS",
            "Filters": [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}],
            "MaxResults": 100,
        }
        if token:
            kwargs["NextToken"] = token
        page = client.get_products(**kwargs)
        yield from page.get("PriceList", [])
        token = page.get("NextToken")
        if not token:
            return


def _fallen_back(table: PriceTable, reason: str) -> PriceTable:
    return dataclasses.replace(table, source=f"{table.source} ({reason})")


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
