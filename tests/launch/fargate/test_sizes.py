from __future__ import annotations

import pytest

from starburst_executor.launch.fargate import sizes
from starburst_executor.config import parse_memory
from starburst_executor.errors import ConfigError


@pytest.mark.parametrize(
    "cpu, memory",
    [(0.25, "512MiB"), (0.25, "2GB"), (0.5, "1GB"), (0.5, "4GB"), (1, "2GB"), (1, "8GB"),
     (2, "16GB"), (4, "8GB"), (4, "30GB"), (8, "16GB"), (8, "60GB"), (16, "32GB"), (16, "120GB")],
)
def test_valid_pairs(cpu: float, memory: str) -> None:
    units, mib = sizes.validate_size(cpu, parse_memory(memory))
    assert units == int(cpu * 1024) and mib == parse_memory(memory)


@pytest.mark.parametrize(
    "cpu, memory",
    [(0.25, "3GB"), (0.5, "5GB"), (1, "1GB"), (4, "31GB"), (8, "18GB"), (16, "36GB"),
     (16, "128GB"), (1, "2.5GB")],
)
def test_invalid_pairs_list_the_choices(cpu: float, memory: str) -> None:
    with pytest.raises(ConfigError) as info:
        sizes.validate_size(cpu, parse_memory(memory))
    text = str(info.value)
    assert f"cpu={cpu:g}" in text and "choose memory" in text


def test_message_names_cpus_that_fit() -> None:
    with pytest.raises(ConfigError, match=r"with 8 vCPU choose memory 16GB to 60GB in 4GB steps"):
        sizes.validate_size(8, parse_memory("18GB"))
    with pytest.raises(ConfigError, match=r"cpu=4"):
        sizes.validate_size(8, parse_memory("18GB"))
    with pytest.raises(ConfigError, match=r"0.5GB, 1GB, 2GB"):
        sizes.validate_size(0.25, parse_memory("4GB"))


def test_invalid_cpu_lists_sizes() -> None:
    with pytest.raises(ConfigError, match=r"0.25, 0.5, 1, 2, 4, 8, 16"):
        sizes.cpu_units(3)


def test_ephemeral_storage() -> None:
    assert sizes.validate_ephemeral_storage(20) == 20  # the default
    assert sizes.validate_ephemeral_storage(21) == 21
    assert sizes.validate_ephemeral_storage(200) == 200
    for bad in (19, 201, 0):
        with pytest.raises(ConfigError, match="20 .the default. or .* from 21 to 200"):
            sizes.validate_ephemeral_storage(bad)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3", "ap-southeast-2", "us-gov-west-1"])
def test_regions(region: str) -> None:
    assert sizes.validate_region(region) == region


@pytest.mark.parametrize("region", ["", "useast1", "US-EAST-1", "us-east", "eu-west-1a"])
def test_bad_regions(region: str) -> None:
    with pytest.raises(ConfigError, match="us-east-1"):
        sizes.validate_region(region)
