"""Workers as containers of the worker image on the local Docker daemon: ``backend="docker"``.

The same contract as Fargate, so an image can be checked here before paying for it: the worker
runs ``python -m starburst_executor.worker`` in the image with its keys in the environment, a
memory limit of ``config.memory`` MiB (no swap: exceeding it is an OOM kill, exit 137, like on
Fargate) and ``config.cpu`` CPUs; its log is the container's.

Differences from Fargate, by necessity:

* A ``file://`` store is bind-mounted into the container at the same absolute path, so the URL
  works unchanged inside.  An ``s3://`` store gets the host's region and endpoint variables, and
  host networking when ``AWS_ENDPOINT_URL`` points at loopback (a moto server).  The host's AWS
  credentials (there is no task role) are passed only with ``docker_aws_credentials=True``.
* Containers run as the calling user, so what the worker writes into the store is the client's.
* Every container carries the labels ``starburst.managed`` and ``starburst.session``:
  :meth:`DockerLauncher.close` and :func:`remove_containers` find them by label.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlparse

from .. import _keys, _threads
from ..config import Config
from ..errors import ConfigError, StarburstError
from .._stats import RequestStats
from .auto_build import WorkerImage
from .base import WORKER_COMMAND, LaunchFailure, TaskHandle, TaskPhase, TaskState, WorkerSpec

__all__ = ["DockerLauncher", "remove_containers", "LABEL_MANAGED", "LABEL_SESSION", "LABEL_WORKER"]

LABEL_MANAGED = "starburst.managed"
LABEL_SESSION = "starburst.session"
LABEL_WORKER = "starburst.worker"
# ECS's own words, so that messages read the same on both backends.
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
EXITED_REASON = "Essential container in task exited"
_AWS_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
_AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_NO_TIME = "0001-01-01T00:00:00Z"


def docker_client(timeout: float = 60.0) -> Any:
    """A ``docker.DockerClient`` for the local daemon, checked with a ping: the one way this
    package (the docker backend, image builds, the test runner) talks to Docker.

    Raises:
        ConfigError: the docker SDK is missing, or no daemon answers; the message says how to
            install the one or start the other.
    """
    try:
        import docker
    except ImportError:
        raise ConfigError(
            "backend='docker' and building worker images need the docker SDK: "
            "pip install 'starburst-executor[docker]'"
        ) from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:  # DockerException, or requests' connection errors
        raise ConfigError(
            f"no Docker daemon answers at {where} ({type(exc).__name__}: {exc}). Start it "
            "(`sudo systemctl start docker`, Docker Desktop, or `sudo dockerd &`), or point "
            "DOCKER_HOST at a running one."
        ) from None
    return client


class _Container:
    def __init__(self, container_id: str, started: float):
        self.id = container_id
        self.launched_at = started
        self.stop_reason: str | None = None
        self.final: TaskState | None = None  # a stopped container's state never changes


class DockerLauncher:
    """Runs each worker as a container of ``image`` on the local Docker daemon.

    Args:
        image: the worker image (``config.image``; see ``starburst build``).
        build_from: with no ``image``, build one from these settings at the first launch
            (``auto_build``), for the local daemon only.
        session_id: labels the containers, so ``close`` and cleanup find them.
        memory: memory limit in MiB (hard, no swap).
        cpu: CPUs (``nano_cpus``); capped at the machine's count, which Docker enforces.
        client: a ``docker.DockerClient``; by default one is made on first use.
        stop_timeout: seconds between SIGTERM and SIGKILL on :meth:`stop`.
    """

    poll_interval = (0.05, 1.0)

    def __init__(
        self,
        image: str | None,
        *,
        session_id: str = "",
        memory: int = 2048,
        cpu: float = 1.0,
        client: Any = None,
        stop_timeout: int = 5,
        build_from: Config | None = None,
        aws_credentials: bool = False,
    ):
        self._image = WorkerImage(image, build_from, push=False)
        self.session_id = session_id
        self.memory = memory
        self.cpu = cpu
        self.stop_timeout = stop_timeout
        self.aws_credentials = aws_credentials
        self.stats = RequestStats()
        self._client = client
        self._containers: dict[str, _Container] = {}
        self._lock = threading.Lock()
        self._image_checked = False

    @classmethod
    def from_config(cls, config: Config, session_id: str, store_url: str) -> DockerLauncher:
        """A launcher for ``config.image`` (built at the first launch with ``auto_build`` and
        none configured), ``config.memory`` and ``config.cpu``.  No daemon call happens here;
        ``store_url`` is taken from each worker's environment at launch."""
        return cls(config.image, session_id=session_id, memory=config.memory, cpu=config.cpu,
                   build_from=config if config.auto_build else None,
                   aws_credentials=config.docker_aws_credentials)

    @property
    def image(self) -> str | None:
        """The worker image; None until an ``auto_build`` image is built."""
        return self._image.known

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = docker_client()
            return self._client

    # --- launching ------------------------------------------------------------------------

    def launch(self, specs: Sequence[WorkerSpec]) -> list[TaskHandle | LaunchFailure]:
        try:
            image = self._image.get()
        except StarburstError as exc:  # the auto_build failed
            return [LaunchFailure(s.worker_id, str(exc), retryable=False) for s in specs]
        if not image:
            reason = (
                "backend='docker' needs a worker image: pass image= (see `starburst build`), "
                "or auto_build=True"
            )
            return [LaunchFailure(s.worker_id, reason, retryable=False) for s in specs]
        problem = self._ensure_image(image)
        if problem is not None:
            return [problem(s.worker_id) for s in specs]
        return [self._launch_one(spec, image) for spec in specs]

    def _ensure_image(self, image: str) -> Any:
        """None when the daemon has the image (pulled if need be), else a failure factory."""
        import docker.errors

        if self._image_checked:
            return None
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            try:
                self.client.images.pull(image, auth_config=_ecr_auth(image))
                self.stats.count("pull")
            except docker.errors.APIError as exc:
                reason = (
                    f"image {image} is not in the local Docker daemon and cannot be pulled "
                    f"({exc.explanation or exc}): build it with `starburst build`, or "
                    f"`docker login` to its registry and `docker pull {image}`"
                )
                return lambda worker_id: LaunchFailure(worker_id, reason, retryable=False)
        except ConfigError as exc:  # no daemon
            reason = str(exc)
            return lambda worker_id: LaunchFailure(worker_id, reason, retryable=False)
        self._image_checked = True
        return None

    def _launch_one(self, spec: WorkerSpec, image: str) -> TaskHandle | LaunchFailure:
        import docker.errors

        env = {k: v for k, v in spec.env.items() if k != _keys.ENV_PARENT_PID}
        # The client's pid means nothing in the container's pid namespace; a dead client's
        # workers end by idle_timeout and are removed by label instead.
        volumes, network_mode, extra_env = _store_access(env.get(_keys.ENV_STORE_URL, ""),
                                                         self.aws_credentials)
        env = {**extra_env, **env}
        cpus = min(self.cpu, float(os.cpu_count() or 1))
        env[_threads.ENV_CPU_SHARE] = f"{cpus:g}"  # the thread pools' size (see _threads)
        kwargs: dict[str, Any] = dict(
            command=list(WORKER_COMMAND),
            environment=env,
            labels={
                LABEL_MANAGED: "true",
                LABEL_SESSION: self.session_id,
                LABEL_WORKER: spec.worker_id,
            },
            mem_limit=f"{self.memory}m",
            memswap_limit=f"{self.memory}m",
            nano_cpus=int(cpus * 1e9),
            init=True,  # PID 1 forwards SIGTERM, so stop() ends the worker at once
            volumes=volumes,
            network_mode=network_mode,
            detach=True,
            # Unique even when a worker id is launched again after a failed start.
            name=re.sub(
                r"[^a-zA-Z0-9_.-]", "-",
                f"starburst-{self.session_id[:24]}-{spec.worker_id}-{uuid.uuid4().hex[:6]}",
            ),
        )
        if hasattr(os, "getuid"):
            kwargs["user"] = f"{os.getuid()}:{os.getgid()}"
        try:
            container = self.client.containers.run(image, **kwargs)
        except docker.errors.APIError as exc:
            status = getattr(exc, "status_code", None) or 500
            return LaunchFailure(
                spec.worker_id,
                f"docker could not start a container of {image}: {exc.explanation or exc}",
                retryable=status >= 500,
            )
        except ConfigError as exc:  # no daemon
            return LaunchFailure(spec.worker_id, str(exc), retryable=False)
        with self._lock:
            self._containers[container.id] = _Container(container.id, time.time())
        self.stats.count("run")
        self.stats.tasks_started += 1
        return TaskHandle(spec.worker_id, container.id)

    # --- watching -------------------------------------------------------------------------

    def poll(self, handles: Sequence[TaskHandle]) -> list[TaskState]:
        return [self._state(h) for h in handles]

    def _state(self, handle: TaskHandle) -> TaskState:
        import docker.errors

        record = self._containers.get(handle.task_id)
        if record is not None and record.final is not None:
            return record.final
        try:
            info = self.client.api.inspect_container(handle.task_id)
        except docker.errors.NotFound:
            state = TaskState(
                handle, TaskPhase.STOPPED, stop_code="TaskFailedToStart",
                stopped_reason="the container is gone (removed outside starburst)",
                stopped_at=time.time(),
            )
            if record is not None:
                record.final = state
            return state
        finally:
            self.stats.count("inspect")
        raw = info.get("State", {})
        status = raw.get("Status", "")
        started_at = _timestamp(raw.get("StartedAt"))
        if status == "created":
            return TaskState(handle, TaskPhase.PENDING)
        if status in ("running", "paused", "restarting"):
            return TaskState(handle, TaskPhase.RUNNING, started_at=started_at)
        exit_code = raw.get("ExitCode")
        stop_reason = record.stop_reason if record is not None else None
        if raw.get("OOMKilled"):
            reason, stop_code = OOM_REASON, "EssentialContainerExited"
        elif stop_reason:
            reason, stop_code = stop_reason, "UserInitiated"
        elif raw.get("Error"):
            reason, stop_code = f"CannotStartContainerError: {raw['Error']}", "TaskFailedToStart"
        else:
            reason, stop_code = f"{EXITED_REASON} (exit code {exit_code})", "EssentialContainerExited"
        state = TaskState(
            handle, TaskPhase.STOPPED, exit_code=exit_code, stop_code=stop_code,
            stopped_reason=reason, started_at=started_at,
            stopped_at=_timestamp(raw.get("FinishedAt")) or time.time(),
        )
        if record is not None:
            record.final = state
        return state

    def log_tail(self, handle: TaskHandle, lines: int = 20) -> str:
        import docker.errors

        try:
            data = self.client.api.logs(handle.task_id, stdout=True, stderr=True, tail=lines)
        except (docker.errors.APIError, ConfigError):
            return ""
        self.stats.count("logs")
        text: str = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        return "\n".join(text.splitlines()[-lines:])

    def prepare(self) -> None:
        pass  # nothing to look up

    def capacity(self, wanted: int) -> int:
        return wanted

    # --- stopping -------------------------------------------------------------------------

    def stop(self, handles: Sequence[TaskHandle], reason: str) -> None:
        import docker.errors

        for handle in handles:
            record = self._containers.get(handle.task_id)
            if record is not None:
                if record.final is not None:
                    continue
                record.stop_reason = record.stop_reason or f"stopped: {reason}"
            try:
                self.client.api.stop(handle.task_id, timeout=self.stop_timeout)
                self.stats.count("stop")
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                pass  # already stopping or stopped: stop is idempotent

    def close(self) -> None:
        """Stop and remove every container of this launcher (found by label as well, so a
        container started by another launcher of the same session goes too)."""
        with self._lock:
            client = self._client
        if client is None:
            return  # never talked to the daemon, so never started anything
        handles = [TaskHandle("", cid) for cid in list(self._containers)]
        self.stop(handles, "executor closed")
        # Final states are read before removal, so poll() still answers after close().
        for handle in handles:
            self._state(handle)
        if self.session_id:
            remove_containers(client, self.session_id)
        else:
            for handle in handles:
                _remove(client, handle.task_id)


def remove_containers(client: Any, session_id: str | None = None) -> int:
    """Remove the worker containers of ``session_id`` (of every session: None), running or not;
    return how many."""
    label = f"{LABEL_SESSION}={session_id}" if session_id else f"{LABEL_MANAGED}=true"
    found = client.api.containers(all=True, filters={"label": label})
    for entry in found:
        _remove(client, entry["Id"])
    return len(found)


def _remove(client: Any, container_id: str) -> None:
    import docker.errors

    try:
        client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError:
        pass  # removal already in progress


_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


def _ecr_auth(image: str) -> dict[str, str] | None:
    """Pull credentials for an ECR image from ``ecr:GetAuthorizationToken``, so an image pushed
    by ``starburst build`` runs here without ``docker login``; None for other registries or
    when no AWS credentials are at hand (the daemon's own login is used then)."""
    match = _ECR_HOST.match(image)
    if match is None:
        return None
    try:
        import base64

        from .. import _aws

        ecr = _aws.client("ecr", match.group(1))
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        user, _, password = base64.b64decode(token).decode().partition(":")
    except Exception:  # no boto3, no credentials, no network: fall back to docker's login
        return None
    return {"username": user, "password": password}


def _store_access(url: str, credentials: bool = False
                  ) -> tuple[dict[str, dict[str, str]], str, dict[str, str]]:
    """(volumes, network mode, extra environment) that let a container open the store at url;
    the host's AWS credentials only with ``credentials``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
        return {path: {"bind": path, "mode": "rw"}}, "none", {}
    if parsed.scheme == "s3":
        extra = {k: os.environ[k] for k in _AWS_VARIABLES if os.environ.get(k)}
        if credentials:
            extra.update(_host_credentials())
        endpoint = extra.get("AWS_ENDPOINT_URL_S3") or extra.get("AWS_ENDPOINT_URL", "")
        host = urlparse(endpoint).hostname or ""
        loopback = host == "localhost" or host.startswith("127.") or host == "::1"
        return {}, "host" if loopback else "bridge", extra
    return {}, "bridge", {}


def _host_credentials() -> dict[str, str]:
    """The host's AWS credentials as ``AWS_*`` variables: the environment's, else boto3's chain
    (profile, SSO...) frozen now; empty when there are none."""
    found = {k: os.environ[k] for k in _AWS_SECRETS if os.environ.get(k)}
    if found:
        return found
    try:
        import boto3

        credentials = boto3.Session().get_credentials()
        if credentials is None:
            return {}
        frozen = credentials.get_frozen_credentials()
    except Exception:  # no boto3, broken credentials: the container has to find its own
        return {}
    values = zip(_AWS_SECRETS, (frozen.access_key, frozen.secret_key, frozen.token))
    return {k: v for k, v in values if v}


def _timestamp(text: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds, as ``time.time()``; None for the zero time."""
    if not text or text.startswith(_NO_TIME[:4]):
        return None
    main, _, fraction = text.rstrip("Z").partition(".")
    try:
        moment = datetime.datetime.fromisoformat(main).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return moment.timestamp() + (float("0." + fraction[:6]) if fraction.isdigit() else 0.0)

