"""The Docker daemon's part of a build: check the base image, build, push, measure.

Every docker SDK error is turned into an :class:`ImageError` here (a missing daemon is the
launcher's :class:`ConfigError`), with what to do next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ImageError
from .recipe import ImageRecipe
from .registry import Registry

__all__ = ["open_daemon", "local_image", "check_base", "build_user_base", "stream_build",
           "stream_push", "sizes", "PLATFORMS"]

PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
_PUSH_TICKS = frozenset({"Preparing", "Waiting", "Pushing"})
_DOCKER_ARCH = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}


def open_daemon(timeout: float = 120.0) -> Any:
    """A ``docker.DockerClient`` for the local daemon (:func:`..launch.docker.docker_client`).

    Raises:
        ConfigError: the ``docker`` package is not installed, or no daemon answers; the
            message says how to start one.
    """
    from ..launch.docker import docker_client

    return docker_client(timeout=timeout)


def local_image(client: Any, name: str) -> Any:
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def check_base(
    client: Any, base: str, recipe: ImageRecipe, platform: str, check_python: bool,
    log: Callable[[str], None],
) -> None:
    """Pull the base if needed, then run it once: this proves the daemon can run (and so build)
    the target architecture, and reads the base's Python minor."""
    import docker.errors

    image = local_image(client, base)
    if image is None:
        log(f"pulling {base} ({platform})")
        try:
            client.images.pull(base, platform=platform)
        except docker.errors.APIError as exc:
            raise ImageError(
                f"cannot pull base image {base} for {platform}: {exc.explanation or exc}. Check the "
                "name, the network, or pass base_image= an image this daemon has."
            ) from None
        image = client.images.get(base)
    arch = _DOCKER_ARCH.get(image.attrs.get("Architecture", ""), image.attrs.get("Architecture"))
    daemon_arch = _DOCKER_ARCH.get(client.version().get("Arch", ""), "")
    if arch != recipe.architecture:
        raise ImageError(
            f"base image {base} is built for {arch}, but architecture={recipe.architecture} needs "
            f"{platform}: use a multi-platform base image or one built for {platform}"
        )
    hint = ""
    if daemon_arch and daemon_arch != recipe.architecture:
        hint = (
            f" The daemon runs on {daemon_arch} and cannot run {recipe.architecture} images, so it "
            f"cannot build them: register QEMU emulation (`apt-get install qemu-user-static "
            f"binfmt-support`), build on an {recipe.architecture} machine, or use "
            f"architecture={daemon_arch}."
        )
    try:
        out = client.containers.run(
            base,
            ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            remove=True, network_mode="none", platform=platform,
        )
    except docker.errors.ContainerError as exc:
        raise ImageError(f"base image {base} cannot run python3 on this daemon: {exc}.{hint}") from None
    except docker.errors.DockerException as exc:
        detail = getattr(exc, "explanation", None) or exc
        raise ImageError(f"cannot start base image {base}: {detail}.{hint}") from None
    minor = out.decode().strip()
    wanted = recipe.environment.python_minor
    if minor != wanted:
        message = (
            f"base image {base} runs Python {minor}, the client runs {wanted}: pickled code only "
            f"travels between equal minor versions. Use a base image with Python {wanted}"
        )
        if check_python:
            raise ImageError(message + ".")
        log("warning: " + message)


def build_user_base(
    client: Any, dockerfile: Path, recipe: ImageRecipe, platform: str, log: Callable[[str], None]
) -> str:
    tag = "starburst-user-base:" + hashlib.sha256((recipe.dockerfile or "").encode()).hexdigest()[:24]
    if local_image(client, tag) is None:
        log(f"building your Dockerfile {dockerfile} as the base ({tag})")
        stream_build(
            client, log, path=str(dockerfile.parent), dockerfile=dockerfile.name, tag=tag,
            platform=platform, network_mode="host",
        )
    return tag


def stream_build(client: Any, log: Callable[[str], None], **kwargs: Any) -> None:
    import docker.errors

    try:
        for chunk in client.api.build(rm=True, forcerm=True, pull=False, decode=True, **kwargs):
            if "error" in chunk:
                raise ImageError(f"docker build failed: {chunk['error'].strip()}")
            text = chunk.get("stream", "").rstrip()
            if text:
                log(text)
    except docker.errors.APIError as exc:
        raise ImageError(f"docker build failed: {exc.explanation or exc}") from None


def stream_push(
    client: Any, target: Registry, tag: str, log: Callable[[str], None]
) -> None:
    import docker.errors

    seen: set[tuple[str, str]] = set()
    try:
        stream = client.api.push(
            target.repository_uri, tag=tag, stream=True, decode=True,
            auth_config=target.auth_config(),
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageError(
                    f"docker push to {target.host} failed: {chunk['error'].strip()}. Check that "
                    "the ECR repository exists and your credentials may push to it "
                    "(ecr:InitiateLayerUpload, ecr:PutImage)."
                )
            status = chunk.get("status", "")
            layer = chunk.get("id", "")
            # One line per layer and state, not one per progress tick.
            if status and (layer, status) not in seen and status not in _PUSH_TICKS:
                seen.add((layer, status))
                log(f"{layer}: {status}" if layer else status)
    except docker.errors.APIError as exc:
        raise ImageError(f"docker push to {target.host} failed: {exc.explanation or exc}") from None


def sizes(client: Any, uri: str) -> tuple[int, int, int]:
    """(image size, packages layer size, size of the layers over the packages)."""
    image = client.images.get(uri)
    history = client.api.history(uri)  # newest first
    worker = 0
    packages = 0
    for entry in history:
        created_by = entry.get("CreatedBy", "")
        if "COPY" in created_by and "/opt/starburst/venv" in created_by:
            packages = int(entry.get("Size", 0))
            break
        worker += int(entry.get("Size", 0))
    return int(image.attrs.get("Size", 0)), packages, worker
