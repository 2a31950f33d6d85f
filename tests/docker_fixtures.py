"""Shared fixtures for tests that need a Docker daemon (started by ``.ci/setup-docker.sh``).

Import the fixtures a module uses explicitly::

    from ..docker_fixtures import docker_client, worker_image  # noqa: F401

Without a daemon, or without the local base images, these fixtures skip with the reason.  The
worker image is built once per test session from a small environment (cloudpickle only, plus
this package), so the image tests stay fast.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from starburst_executor import image
from starburst_executor.config import load_config

BASE_IMAGE = "starburst-ci/python:3.11"
OTHER_MINOR_BASE_IMAGE = "starburst-ci/python:3.13"
REGISTRY = "127.0.0.1:5000"
SETUP_HINT = "run `bash .ci/setup-docker.sh` as root (dockerd, a registry, local base images)"
# What the worker needs to run and nothing else, to keep test images small.
WORKER_PINS = ("cloudpickle",)


def small_environment(*extra: tuple[str, str]) -> image.Environment:
    """This interpreter's environment cut down to the worker's own needs, plus ``extra`` pins."""
    full = image.capture_environment()
    pins = dict(p for p in full.pins if p[0] in WORKER_PINS)
    pins.update(extra)
    return image.Environment(
        python_version=full.python_version,
        pins=tuple(sorted(pins.items())),
        package_version=full.package_version,
        package_digest=full.package_digest,
    )


def local_config(**overrides: Any) -> Any:
    return load_config({"region": "us-east-1", **overrides}, env={})


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A client of a running daemon, or a skip saying how to get one."""
    try:
        import docker
    except ImportError:
        pytest.skip("the docker SDK is not installed (pip install docker)")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker daemon answers ({type(exc).__name__}); {SETUP_HINT}")
    yield client
    client.close()


def _need_image(client: Any, name: str) -> str:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        pytest.skip(f"base image {name} is missing; {SETUP_HINT}")
    return name


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    return _need_image(docker_client, BASE_IMAGE)


@pytest.fixture(scope="session")
def other_minor_base_image(docker_client: Any) -> str:
    return _need_image(docker_client, OTHER_MINOR_BASE_IMAGE)


@pytest.fixture(scope="session")
def registry() -> str:
    """The local registry that stands in for ECR (htpasswd user AWS, moto's token password)."""
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5)  # noqa: S310 (loopback)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return REGISTRY
        pytest.skip(f"the registry on {REGISTRY} answered HTTP {exc.code}; {SETUP_HINT}")
    except OSError:
        pytest.skip(f"no registry on {REGISTRY}; {SETUP_HINT}")
    return REGISTRY


@pytest.fixture(scope="session")
def worker_image(docker_client: Any, base_image: str) -> str:
    """A worker image of this checkout for the local daemon (built once, not pushed)."""
    result = image.build_image(
        local_config(), environment=small_environment(), base_image=base_image, push=False,
        client=docker_client, log=lambda line: None,
    )
    return result.uri
