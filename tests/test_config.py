from __future__ import annotations

import json
from pathlib import Path

import pytest

from starburst_executor.config import Config, load_config, parse_memory, write_config_file
from starburst_executor.errors import ConfigError


@pytest.mark.parametrize(
    "text, mib",
    [("8GB", 8192), ("8 GiB", 8192), ("512MiB", 512), ("512", 512), (2048, 2048),
     ("0.5GB", 512), ("1g", 1024)],
)
def test_parse_memory(text: str | int, mib: int) -> None:
    assert parse_memory(text) == mib


@pytest.mark.parametrize("text", ["lots", "8TB", "-1GB", "0", "0.3MiB", True])
def test_parse_memory_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)  # type: ignore[arg-type]


def test_defaults() -> None:
    config = load_config()
    assert config == Config()
    assert config.backend == "fargate"


def test_precedence_keyword_over_env_over_file(config_file: Path) -> None:
    write_config_file({"cpu": 2, "memory": "4GB", "region": "eu-west-1", "bucket": "b-file"},
                      config_file)
    env = {"STARBURST_CPU": "4", "STARBURST_REGION": "us-west-2"}
    config = load_config({"cpu": 8, "memory": None}, env=env)
    assert config.cpu == 8  # keyword
    assert config.region == "us-west-2"  # env over file
    assert config.memory == 4096  # file, since the keyword was None
    assert config.bucket == "b-file"


def test_env_values_are_converted() -> None:
    config = load_config(env={
        "STARBURST_SPOT": "yes", "STARBURST_SUBNETS": "subnet-1, subnet-2",
        "STARBURST_MAX_WORKERS": "7", "STARBURST_IDLE_TIMEOUT": "2.5",
    })
    assert config.spot is True
    assert config.subnets == ("subnet-1", "subnet-2")
    assert config.max_workers == 7
    assert config.idle_timeout == 2.5


def test_bad_value_names_its_source() -> None:
    with pytest.raises(ConfigError, match="STARBURST_MAX_WORKERS"):
        load_config(env={"STARBURST_MAX_WORKERS": "many"})
    with pytest.raises(ConfigError, match="argument memory="):
        load_config({"memory": "lots"})


def test_unknown_keyword_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'cpus'.*'cpu'"):
        load_config({"cpus": 2})


@pytest.mark.parametrize(
    "overrides, match",
    [({"backend": "lambda"}, "backend"), ({"architecture": "arm"}, "architecture"),
     ({"max_workers": 0}, "max_workers"), ({"max_retries": -1}, "max_retries"),
     ({"idle_timeout": 0}, "idle_timeout"), ({"max_tasks_per_child": 0}, "max_tasks_per_child")],
)
def test_invalid_settings(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(overrides)


def test_broken_config_file_says_so(config_file: Path) -> None:
    config_file.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config()


def test_config_file_ignores_unknown_keys(config_file: Path) -> None:
    config_file.write_text(json.dumps({"cpu": 2, "from_a_newer_version": 1}))
    assert load_config().cpu == 2


def test_replace_validates() -> None:
    with pytest.raises(ConfigError):
        Config().replace(backend="nope")


def test_update_config_file_keeps_other_settings_and_deletes_an_empty_file(tmp_path: Path) -> None:
    from starburst_executor.config import read_config_file, update_config_file

    path = tmp_path / "config.json"
    assert read_config_file(path) is None
    update_config_file({"bucket": "b", "region": "eu-west-1"}, path)
    update_config_file({"image": "repo:tag"}, path, remove=["region"])
    assert read_config_file(path) == {"bucket": "b", "image": "repo:tag"}
    update_config_file({}, path, remove=["bucket", "image"])
    assert not path.exists()
    path.write_text("not json")
    assert read_config_file(path) is None


def test_store_root_and_sessions_prefix() -> None:
    from starburst_executor.config import sessions_prefix, store_root

    config = Config(bucket="b", prefix="/runs/", region="us-east-1", kms_key_id="k")
    assert store_root(config) == "s3://b/runs?region=us-east-1&kms_key_id=k"
    assert sessions_prefix(config) == ("b", "runs/sessions/")
    assert sessions_prefix(Config(bucket="b", prefix="")) == ("b", "sessions/")
    explicit = Config(store="s3://other/p/q?region=eu-west-1")
    assert store_root(explicit) == "s3://other/p/q?region=eu-west-1"
    assert sessions_prefix(explicit) == ("other", "p/q/sessions/")
    with pytest.raises(ConfigError, match="starburst setup"):
        store_root(Config())
    with pytest.raises(ConfigError, match="starburst setup"):
        sessions_prefix(Config())


@pytest.mark.parametrize("bucket, words", [
    ("a/b", ["no '/'", "bucket='a'", "prefix='b'"]),
    ("s3://mine/runs", ["bucket='mine'", "prefix='runs'"]),
    ("ab", ["3 to 63"]),
    ("My_Bucket", ["lowercase"]),
    ("my..bucket", ["dots"]),
    ("192.168.1.1", ["IP address"]),
    ("xn--bucket", ["reserves"]),
])
def test_bad_bucket_names_are_refused(bucket: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"bucket": bucket})
    assert all(w in str(caught.value) for w in words), caught.value


@pytest.mark.parametrize("prefix", ["/runs", "a/../b", "a//b", "./x", "a\\b", "a\nb"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="prefix="):
        load_config({"prefix": prefix})


@pytest.mark.parametrize("region", ["us-east", "US-EAST-1", "useast1", "us_east_1"])
def test_bad_regions_are_refused(region: str) -> None:
    with pytest.raises(ConfigError, match="not an AWS region name"):
        load_config({"region": region})


def test_good_names_pass() -> None:
    config = load_config({"bucket": "starburst-123456789012-us-east-1", "prefix": "team/alice/",
                          "region": "us-gov-west-1"})
    assert config.bucket.startswith("starburst-") and config.prefix == "team/alice/"
    assert load_config({"prefix": ""}).prefix == ""
    with pytest.raises(ConfigError, match="STARBURST_BUCKET"):
        load_config(env={"STARBURST_BUCKET": "a/b"})
