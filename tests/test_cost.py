"""Cost figures against hand-computed ones, and the Pricing API reader with its fallback."""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import Stubber

from starburst_executor import cost
from starburst_executor.provision.prices import fetch_prices, parse_products
from starburst_executor.testing import MotoServer


def test_x86_on_demand_estimate_matches_hand_computation():
    est = cost.estimate(50, 4, 8192, 1.0, region="us-east-1")
    # 50 tasks x (4 vCPU x $0.04048 + 8 GB x $0.004445) x 1 h
    assert est.total == pytest.approx(50 * (4 * 0.04048 + 8 * 0.004445))
    assert est.total == pytest.approx(9.874)
    assert est.vcpu == pytest.approx(8.096)
    assert est.memory == pytest.approx(1.778)
    assert est.storage == 0
    assert est.tasks == 50 and est.billed_seconds == 3600
    assert est.per_hour == pytest.approx(9.874)


def test_arm_estimate_matches_hand_computation():
    est = cost.estimate(50, 4, 8192, 1.0, architecture="arm64", region="us-east-1")
    assert est.total == pytest.approx(50 * (4 * 0.03238 + 8 * 0.00356))
    assert est.total == pytest.approx(7.9)
    assert est.architecture == "arm64"


def test_spot_estimate_matches_hand_computation():
    est = cost.estimate(50, 4, 8192, 1.0, spot=True, region="us-east-1")
    assert est.total == pytest.approx(50 * (4 * 0.01268354 + 8 * 0.00139267))
    assert est.total == pytest.approx(3.093776)
    arm_spot = cost.estimate(10, 2, 4096, 2.0, spot=True, architecture="arm64", region="eu-west-1")
    assert arm_spot.total == pytest.approx(10 * 2 * (2 * 0.01067242 + 4 * 0.00117191))


def test_regions_differ_and_unknown_region_uses_the_highest_rates():
    frankfurt = cost.estimate(1, 1, 2048, 1.0, region="eu-central-1")
    assert frankfurt.total == pytest.approx(0.04656 + 2 * 0.00511)
    tokyo = cost.estimate(1, 1, 2048, 1.0, region="ap-northeast-1")
    assert tokyo.total == pytest.approx(0.05056 + 2 * 0.00553)
    for region in ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1",
                   "ap-southeast-1", "ap-northeast-1"):
        assert cost.OFFLINE_PRICES.knows(region)
    unknown = cost.estimate(1, 1, 2048, 1.0, region="xx-nowhere-9")
    assert "default rates" in unknown.source
    for region in cost.OFFLINE_PRICES.regions:
        assert unknown.total >= cost.estimate(1, 1, 2048, 1.0, region=region).total


def test_per_second_billing_with_one_minute_minimum():
    short = cost.task_cost(1, 2048, 30, region="us-east-1")
    assert short.billed_seconds == 60
    assert short.total == pytest.approx((0.04048 + 2 * 0.004445) / 60)
    assert cost.task_cost(1, 2048, 0, region="us-east-1").total == pytest.approx(short.total)
    longer = cost.task_cost(1, 2048, 95.2, region="us-east-1")
    assert longer.billed_seconds == 96
    assert longer.total == pytest.approx((0.04048 + 2 * 0.004445) * 96 / 3600)


def test_ephemeral_storage_above_20_gib_is_billed():
    base = cost.estimate(1, 1, 2048, 1.0, region="us-east-1")
    big = cost.estimate(1, 1, 2048, 1.0, region="us-east-1", ephemeral_storage_gib=50)
    assert big.storage == pytest.approx(30 * 0.000111)
    assert big.total == pytest.approx(base.total + 30 * 0.000111)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError):
        cost.estimate(1, 1, 2048, 1.0, architecture="sparc")
    with pytest.raises(ValueError):
        cost.task_cost(1, 2048, -1)
    with pytest.raises(ValueError):
        cost.estimate(-1, 1, 2048, 1.0)


def test_custom_price_table_is_used():
    rates = cost.Rates(1.0, 0.5)
    region = cost.RegionPrices(rates, rates, rates, rates, 0.0)
    table = cost.PriceTable({"default": region}, source="test", date="2000-01-01")
    assert cost.estimate(2, 1, 1024, 1.0, prices=table).total == pytest.approx(2 * 1.5)


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
