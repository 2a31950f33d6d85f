"""Shared fixtures of the provisioning and CLI tests: one moto server, reset per test."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from starburst_executor.provision import Clients
from starburst_executor.testing import MotoServer

READ_ONLY_PREFIXES = ("Get", "List", "Describe", "Head")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    # AWS managed policies (AmazonECSTaskExecutionRolePolicy...) exist in every real account;
    # the in-process moto server loads them when its IAM backend is (re)created.  Only the
    # ones setup attaches are kept: parsing all of them costs seconds per test.
    import moto.iam.models as iam_models

    wanted = {"AmazonECSTaskExecutionRolePolicy", "AmazonEC2ContainerRegistryReadOnly"}
    saved_data = iam_models.aws_managed_policies_data
    iam_models.aws_managed_policies_data = json.dumps(
        {k: v for k, v in json.loads(saved_data).items() if k in wanted})
    saved = os.environ.get("MOTO_IAM_LOAD_MANAGED_POLICIES")
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    try:
        with MotoServer() as server:
            yield server
    finally:
        iam_models.aws_managed_policies_data = saved_data
        if saved is None:
            os.environ.pop("MOTO_IAM_LOAD_MANAGED_POLICIES", None)
        else:
            os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = saved


@pytest.fixture
def aws(moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A fresh moto account, boto3 pointed at it, and a config file path in ``tmp_path``.

    Each test gets its own account (``MOTO_ACCOUNT_ID``, read by the in-process server on every
    request) instead of a reset, which would wipe the state of other test modules' servers:
    moto's backends are global to the process.
    """
    monkeypatch.setenv("MOTO_ACCOUNT_ID", f"{random.randrange(10**11, 10**12)}")
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("STARBURST_CONFIG", str(tmp_path / "starburst.json"))
    for name in ("STARBURST_REGION", "STARBURST_BUCKET", "STARBURST_BACKEND", "AWS_PROFILE",
                 "STARBURST_FARGATE_VCPU_QUOTA", "STARBURST_IMAGE", "STARBURST_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    return moto_server


class CallRecorder:
    """Every AWS operation made through a session, as ``service.Operation``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls.append(f"{model.service_model.service_name}.{model.name}")

    def mutating(self) -> list[str]:
        return [c for c in self.calls if not c.split(".", 1)[1].startswith(READ_ONLY_PREFIXES)]


@pytest.fixture
def recorded(aws: MotoServer) -> tuple[Clients, CallRecorder]:
    """Clients whose every call is recorded (a botocore ``before-call`` hook)."""
    session = boto3.session.Session(region_name="us-east-1")
    recorder = CallRecorder()
    session.events.register("before-call", recorder)
    return Clients("us-east-1", session=session), recorder


def account_bucket() -> str:
    """The bucket setup creates by default in the current test's account."""
    return f"starburst-{os.environ['MOTO_ACCOUNT_ID']}-us-east-1"
