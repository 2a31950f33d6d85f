"""Shared AWS fixtures: one moto server per test session, the environment pointed at it.

Import the fixtures a module uses explicitly::

    from ..aws_fixtures import aws, moto_server  # noqa: F401
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from starburst_executor.config import Config, load_config
from starburst_executor.testing import FargateEmulator, MotoServer
from starburst_executor.testing.fargate import Container, ContainerSpec, SubprocessRunner

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    server.freeze_task_transitions()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The moto server, with boto3 in this process pointed at it (real credential files hidden)."""
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    for name in ("AWS_PROFILE", "STARBURST_FARGATE_VCPU_QUOTA"):
        monkeypatch.delenv(name, raising=False)
    return moto_server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def boto(service: str, server: MotoServer) -> Any:
    """A plain boto3 client on the moto server (for arranging and inspecting, not under test)."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def make_bucket(server: MotoServer) -> str:
    name = unique("sb-test")
    boto("s3", server).create_bucket(Bucket=name)
    return name


def make_cluster(server: MotoServer, log_group: str = "/starburst/workers") -> str:
    """A cluster, the workers' log group and security group, as `starburst setup` would
    leave them."""
    name = unique("sb-cluster")
    boto("ecs", server).create_cluster(clusterName=name)
    logs = boto("logs", server)
    try:
        logs.create_log_group(logGroupName=log_group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    ec2 = boto("ec2", server)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    if not ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
            {"Name": "group-name", "Values": ["starburst-workers"]}])["SecurityGroups"]:
        ec2.create_security_group(GroupName="starburst-workers", VpcId=vpc["VpcId"],
                                  Description="starburst-executor workers")
    return name


@pytest.fixture
def bucket(aws: MotoServer) -> str:
    return make_bucket(aws)


@pytest.fixture
def cluster(aws: MotoServer) -> str:
    return make_cluster(aws)


@pytest.fixture
def fargate(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FargateEmulator]:
    """An emulated Fargate data plane; boto3 in this process goes through its proxy."""
    emulator = FargateEmulator(moto_server, stop_grace=1.0).start()
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    for name in ("AWS_PROFILE", "STARBURST_FARGATE_VCPU_QUOTA"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield emulator
    finally:
        emulator.stop()


def sleeper(seconds: float = 30.0) -> Callable[[ContainerSpec], Container]:
    """A container runner whose containers print a line and sleep, instead of running a worker
    (for tests of the launcher that need tasks, not work done)."""
    runner = SubprocessRunner()

    def run(spec: ContainerSpec) -> Container:
        code = f"import time; print('container up', flush=True); time.sleep({seconds})"
        return runner(dataclasses.replace(spec, command=("python", "-c", code)))

    return run


def fargate_config(cluster: str, bucket: str, **changes: Any) -> Config:
    """A configuration for the fargate backend on the moto server."""
    values: dict[str, Any] = dict(
        backend="fargate", region=REGION, cluster=cluster, bucket=bucket,
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:test",
        cpu=0.25, memory=512)
    values.update(changes)
    return load_config(values, env={}, path=Path(os.devnull + ".none"))


# Packages the worker needs for an s3:// store, on top of the docker fixtures' small image.
_BOTO_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six",
                  "urllib3")


@pytest.fixture(scope="session")
def boto_worker_image(docker_client: Any, base_image: str) -> str:
    """A worker image of this checkout that can reach S3 (built once, not pushed); skips
    without a Docker daemon or the local base image (see tests/docker_fixtures.py)."""
    from importlib.metadata import version

    from starburst_executor import image

    from .docker_fixtures import local_config, small_environment

    environment = small_environment(*[(name, version(name)) for name in _BOTO_PACKAGES])
    result = image.build_image(local_config(), environment=environment, base_image=base_image,
                               push=False, client=docker_client, log=lambda line: None)
    return result.uri
