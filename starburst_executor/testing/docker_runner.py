"""Real containers for the emulated Fargate: ``FargateEmulator(moto, runner=DockerRunner())``.

Each emulated task's container runs the task definition's image (or one given image standing in
for it) on the local Docker daemon with the task's command and environment, on the host network
(the emulator's endpoints are on loopback).  An image that is not local is pulled, with ``auth``
(for the stand-in registry, the credentials in moto's ECR token).  A container is removed once
it exited and its output was read, or by :meth:`DockerRunner.close`.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Mapping
from typing import Any

from ..launch.docker import LABEL_MANAGED, LABEL_WORKER, docker_client
from .fargate import Container, ContainerSpec

__all__ = ["DockerRunner", "MOTO_ECR_AUTH"]

# What moto's ecr.get_authorization_token hands out for its default account.
MOTO_ECR_AUTH: Mapping[str, str] = {"username": "AWS", "password": "123456789012-auth-token"}


class _DockerContainer:
    def __init__(self, client: Any, container_id: str):
        self._client = client
        self.id = container_id
        self._exit_code: int | None = None
        self._output = ""  # kept once the container exited, as it is removed then

    def poll(self) -> int | None:
        import docker.errors

        if self._exit_code is not None:
            return self._exit_code
        try:
            state = self._client.api.inspect_container(self.id)["State"]
        except docker.errors.NotFound:  # removed behind our back: report it as killed
            self._exit_code = 137
            return self._exit_code
        if state["Status"] not in ("exited", "dead"):
            return None
        self._output = self._logs()
        self._exit_code = int(state["ExitCode"])
        self.remove()
        return self._exit_code

    def signal(self, sig: int) -> None:
        import docker.errors

        if self.poll() is None:
            try:
                self._client.api.kill(self.id, signal=_signal.Signals(sig).name)
            except docker.errors.APIError:
                pass  # it exited meanwhile

    def output(self) -> str:
        return self._output if self._exit_code is not None else self._logs()

    def _logs(self) -> str:
        import docker.errors

        try:
            data = self._client.api.logs(self.id, stdout=True, stderr=True)
        except docker.errors.APIError:
            return self._output
        return str(data.decode("utf-8", "replace"))

    def remove(self) -> None:
        import docker.errors

        try:
            self._client.api.remove_container(self.id, force=True)
        except docker.errors.APIError:
            pass  # gone already


class DockerRunner:
    """Starts each emulated task's container on the local Docker daemon (``pip install docker``).

    Args:
        client: a ``docker.DockerClient``; by default one for the local daemon.
        image: run this image instead of the task definition's (e.g. a local tag standing in
            for an ECR URI).
        auth: registry credentials for pulling images that are not local.
        memory: a memory limit in MiB for every container (None: no limit).
    """

    def __init__(self, client: Any = None, *, image: str | None = None,
                 auth: Mapping[str, str] | None = MOTO_ECR_AUTH, memory: int | None = None):
        self.client = client or docker_client()
        self.image = image
        self.auth = dict(auth) if auth else None
        self.memory = memory
        self.containers: list[_DockerContainer] = []

    def __call__(self, spec: ContainerSpec) -> Container:
        import docker.errors

        image = self.image or spec.image
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            self.client.images.pull(image, auth_config=self.auth)
        kwargs: dict[str, Any] = {}
        if self.memory:
            kwargs.update(mem_limit=f"{self.memory}m", memswap_limit=f"{self.memory}m")
        container = self.client.containers.run(
            image,
            list(spec.command) or None,
            environment=dict(spec.env),
            labels={LABEL_MANAGED: "true", LABEL_WORKER: spec.task_arn.rsplit("/", 1)[-1]},
            network_mode="host",
            init=True,
            detach=True,
            **kwargs,
        )
        handle = _DockerContainer(self.client, container.id)
        self.containers.append(handle)
        return handle

    def close(self) -> None:
        """Remove every container this runner started."""
        for container in self.containers:
            container.remove()
        self.containers.clear()
