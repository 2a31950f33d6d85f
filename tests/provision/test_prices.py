"""Fargate rates from the AWS Pricing API, and the fallback to the offline table."""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import Stubber

from starburst_executor import cost
from starburst_executor.provision.prices import fetch_prices, parse_products
from starburst_executor.testing import MotoServer


def _product(usage: str, usd: str) -> str:
    return json.dumps({
        "product": {"attributes": {"usagetype": usage}},
        "terms": {"OnDemand": {"X": {"priceDimensions": {"Y": {"pricePerUnit": {"USD": usd}}}}}},
    })


def test_fetch_prices_reads_the_pricing_api():
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    page = [
        _product("EUC1-Fargate-vCPU-Hours:perCPU", "0.05"),
        _product("EUC1-Fargate-GB-Hours", "0.005"),
        _product("EUC1-Fargate-ARM-vCPU-Hours:perCPU", "0.04"),
        _product("EUC1-Fargate-ARM-GB-Hours", "0.004"),
        _product("EUC1-SpotUsage-Fargate-vCPU-Hours:perCPU", "0.015"),
        _product("EUC1-SpotUsage-Fargate-GB-Hours", "0.0015"),
        _product("EUC1-Fargate-Windows-vCPU-Hours:perCPU", "9.9"),
        _product("EUC1-Fargate-EphemeralStorage-GB-Hours", "0.0002"),
    ]
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": page[:4], "NextToken": "t"})
        stub.add_response("get_products", {"PriceList": page[4:]})
        table = fetch_prices("eu-central-1", client=client, today=datetime.date(2026, 1, 2))
    assert table.source == "AWS Pricing API" and table.date == "2026-01-02"
    prices = table.for_region("eu-central-1")
    assert prices.x86 == cost.Rates(0.05, 0.005)
    assert prices.arm == cost.Rates(0.04, 0.004)
    assert prices.x86_spot == cost.Rates(0.015, 0.0015)
    # No ARM Spot rates from the API: taken from the offline table.
    assert prices.arm_spot == cost.OFFLINE_PRICES.for_region("eu-central-1").arm_spot
    assert prices.storage_gb_hour == 0.0002
    assert cost.estimate(1, 1, 1024, 1.0, region="eu-central-1", prices=table).total == (
        pytest.approx(0.055))


def test_parse_products_ignores_other_usage():
    found = parse_products([_product("USE1-Fargate-Windows-GB-Hours", "1"),
                            _product("Fargate-vCPU-Hours:perCPU", "0.04048")])
    assert found == {("x86", "vcpu_hour"): 0.04048}


def test_fetch_prices_falls_back_when_the_api_fails():
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("get_products", "AccessDeniedException", "no")
        table = fetch_prices("us-east-1", client=client)
    assert table.regions is cost.OFFLINE_PRICES.regions
    assert "Pricing API unavailable" in table.source


@pytest.mark.timeout(60)
def test_fetch_prices_falls_back_under_moto():
    with MotoServer() as server, server.patched_environ():
        table = fetch_prices("us-east-1", timeout=2)
    assert table.source.startswith("offline table (")
