"""Cost figures against hand-computed ones."""

from __future__ import annotations

import pytest

from starburst_executor import cost


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
