"""Shared AWS fixtures: one moto server per test session, the environment pointed at it.

Import the fixtures a module uses explicitly::

    from ..aws_fixtures import aws, moto_server  # noqa: F401
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from starburst_executor.testing import MotoServer

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
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
    """A cluster and the workers' log group, as `starburst setup` would leave them."""
    name = unique("sb-cluster")
    boto("ecs", server).create_cluster(clusterName=name)
    logs = boto("logs", server)
    try:
        logs.create_log_group(logGroupName=log_group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    return name


@pytest.fixture
def bucket(aws: MotoServer) -> str:
    return make_bucket(aws)


@pytest.fixture
def cluster(aws: MotoServer) -> str:
    return make_cluster(aws)
