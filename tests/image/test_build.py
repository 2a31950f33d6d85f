"""Building, pushing and running worker images with a real Docker daemon and a local registry
standing in for ECR (credentials from moto's ECR token).  Skipped without a daemon."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from starburst_executor import _keys, _tags, payload
from starburst_executor.errors import ConfigError, PayloadVersionError
from starburst_executor.image import ImageError, build_image
from starburst_executor.launch.base import TaskHandle
from starburst_executor.launch.docker import DockerLauncher
from starburst_executor.storage.local import LocalStore
from starburst_executor.testing import MotoServer

from ..aws_fixtures import aws, moto_server, unique  # noqa: F401
from ..contracts._wire import assign, put_batch, read_part
from ..contracts.launcher_contract import _spec, _wait_stopped
from ..docker_fixtures import (  # noqa: F401
    base_image,
    docker_client,
    local_config,
    other_minor_base_image,
    registry,
    small_environment,
)

pytestmark = pytest.mark.timeout(300)
quiet = {"log": lambda line: None}


def test_build_push_then_nothing_to_do(
    aws: MotoServer, registry: str, docker_client: Any, base_image: str
) -> None:
    repository = unique("worker")
    env = small_environment()  # once: the package's digest changes whenever a file is edited
    lines: list[str] = []
    first = build_image(local_config(), repository=repository, environment=env,
                        base_image=base_image, registry=registry, client=docker_client,
                        log=lines.append)
    assert first.built and first.pushed
    assert first.uri == f"{registry}/{repository}:{first.tag}"
    assert any("Step" in line for line in lines)  # the build's progress streamed through log
    assert any(line.startswith("built ") and "worker layers" in line for line in lines)
    # The layers over the base and the packages are the worker's own: small.
    assert 0 < first.worker_size < 60e6
    assert first.size > first.packages_size + first.worker_size

    ecr = boto3.client("ecr", region_name="us-east-1")
    (repo,) = ecr.describe_repositories(repositoryNames=[repository])["repositories"]
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in tags} == _tags.resource_tags()

    started = time.monotonic()
    again = build_image(local_config(), repository=repository, environment=env,
                        base_image=base_image, registry=registry, client=None, **quiet)
    assert not again.built and not again.pushed and again.uri == first.uri
    assert time.monotonic() - started < 10  # one HEAD request; not even a daemon is asked


def test_a_new_pin_builds_a_new_tag_reusing_the_base(
    aws: MotoServer, registry: str, docker_client: Any, base_image: str
) -> None:
    repository = unique("worker")
    env = small_environment()
    first = build_image(local_config(), repository=repository, environment=env,
                        base_image=base_image, registry=registry, client=docker_client, **quiet)
    six = env.replace_pin("six", "1.17.0")
    second = build_image(local_config(), repository=repository, environment=six,
                         base_image=base_image, registry=registry, client=docker_client, **quiet)
    assert second.built and second.tag != first.tag
    out = docker_client.containers.run(second.uri, ["python", "-c", "import six; print(six.__version__)"],
                                       remove=True, network_mode="none")
    assert out.decode().strip() == "1.17.0"


def test_a_package_without_a_wheel_is_named(docker_client: Any, base_image: str) -> None:
    env = small_environment(("cloudpickle", "0.0.0"))
    with pytest.raises(ImageError, match=r"no wheel .* cloudpickle==0\.0\.0.*allow_index=True"):
        build_image(local_config(), environment=env, base_image=base_image, push=False,
                    client=docker_client, **quiet)


def test_cross_building_without_emulation_is_refused(docker_client: Any, base_image: str) -> None:
    if docker_client.version().get("Arch") not in ("amd64", "x86_64"):
        pytest.skip("this check runs on an x86_64 daemon")
    with pytest.raises(ImageError, match="arm64"):
        build_image(local_config(architecture="arm64"), environment=small_environment(),
                    base_image=base_image, push=False, client=docker_client, **quiet)


def test_users_dockerfile_is_the_base(
    docker_client: Any, base_image: str, tmp_path: Path
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {base_image}\nRUN echo from-user > /etc/user-layer\n")
    env = small_environment()
    result = build_image(local_config(), environment=env, base_image=base_image,
                         dockerfile=dockerfile, push=False, client=docker_client, **quiet)
    out = docker_client.containers.run(result.uri, ["cat", "/etc/user-layer"], remove=True,
                                       network_mode="none")
    assert out.decode().strip() == "from-user"
    again = build_image(local_config(), environment=env, base_image=base_image,
                        dockerfile=dockerfile, push=False, client=docker_client, **quiet)
    assert not again.built


def test_a_worker_of_another_python_minor_refuses_the_payload(
    docker_client: Any, other_minor_base_image: str, tmp_path: Path
) -> None:
    with pytest.raises(ImageError, match="runs Python 3.13"):
        build_image(local_config(), environment=small_environment(), force=True,
                    base_image=other_minor_base_image, push=False, client=docker_client, **quiet)
    mismatched = build_image(local_config(), environment=small_environment(),
                             base_image=other_minor_base_image, push=False, check_python=False,
                             client=docker_client, **quiet)
    store = LocalStore(tmp_path / "session")
    put_batch(store, "b1", pow, [(0, (2, 5))])
    spec = _spec(store, idle=0.5)
    assign(store, spec.worker_id, 0, "b1")
    launcher = DockerLauncher(mismatched.uri, session_id=unique("mm"), client=docker_client)
    try:
        (handle,) = launcher.launch([spec])
        assert isinstance(handle, TaskHandle)
        _wait_stopped(launcher, [handle], 60)
        log = launcher.log_tail(handle, 50)
        assert "refusing batch b1" in log and "Rebuild the worker image" in log
        # The refusal travels back as a result part the worker wrote under its own Python, so
        # the client's reader refuses it in turn, with the same advice.
        (key,) = store.list(_keys.RESULTS_PREFIX)
        with pytest.raises(PayloadVersionError, match=r"Python 3\.13.*Python 3\.11.*Rebuild"):
            read_part(store, key)
    finally:
        launcher.close()


def test_unreachable_registry_is_a_clear_error(aws: MotoServer) -> None:
    with pytest.raises(ImageError, match="cannot reach the registry 127.0.0.1:9"):
        build_image(local_config(), environment=small_environment(), registry="127.0.0.1:9",
                    **quiet)


def test_missing_credentials_are_a_config_error(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance role
    with pytest.raises(ConfigError, match="no AWS credentials.*aws configure"):
        build_image(local_config(), environment=small_environment(), **quiet)


def test_extra_requirements_are_installed_from_the_wheelhouse(
    docker_client: Any, base_image: str
) -> None:
    result = build_image(local_config(), environment=small_environment(), base_image=base_image,
                         requirements=["six==1.17.0"], push=False, client=docker_client, **quiet)
    out = docker_client.containers.run(
        result.uri, ["python", "-c", "import six, cloudpickle; print(six.__version__)"],
        remove=True, network_mode="none")
    assert out.decode().strip() == "1.17.0"
