"""An emulated Fargate data plane on a moto server, so code that uses Fargate runs without AWS.

moto accepts ``RunTask`` but runs nothing.  :class:`FargateEmulator` watches the moto ECS backends
(moto runs in this process) for new tasks, runs each task's container command with its override
environment (a subprocess by default, a Docker container with
:class:`~starburst_executor.testing.docker_runner.DockerRunner`, or any :class:`ContainerRunner`),
and when the command exits
marks the task ``STOPPED`` with the real exit code, as ECS does, and pushes its output to the
task's CloudWatch Logs stream.  Faults can be injected: an OOM kill (exit 137), a Spot
interruption, a task that never starts, an image that cannot be pulled, ``RunTask`` failure
entries and S3 ``SlowDown`` answers.

::

    client boto3 ----\\                                       /--> moto (ECS, S3, Logs...)
                      >--> AwsProxy (counts, faults) -------<
    worker boto3 ----/                                        \\
         ^                                                     |
         |        FargateEmulator thread: new moto task -> run its command; exit -> STOPPED
         +-------------------------------------------------------

Each task gets its own access key id (``AWS_ACCESS_KEY_ID`` in its environment; moto maps any
key to its one account), so the proxy knows which task sent each request
(:attr:`AwsProxy.by_caller`, :meth:`FargateEmulator.task_requests`).

What a modelled cold start means here.  On Fargate each task has its own vCPUs: it is
``PENDING`` for the cold start (provisioning, image pull), then its container boots on its own
CPU.  Here every container shares this machine's cores, so twenty Python workers importing
boto3 at once take several seconds each, which no Fargate task would.  With
``boot_during_cold_start=True`` the container starts at ``RunTask``, boots while its task is
still ``PENDING``, and every AWS request it sends is held by the proxy until the task is
``RUNNING`` plus ``boot`` seconds (the modelled boot on a task's own vCPU); a container that
exits meanwhile is reported once its task has been ``RUNNING``.  Without it (the default) the
container starts only once the cold start is over, and its boot here counts as start-up time.

Example::

    with MotoServer() as moto, FargateEmulator(moto) as fargate, fargate.patched_environ():
        ...  # create the bucket and cluster, then run FargateExecutor(backend="fargate")
        fargate.inject("oom")  # the next task is killed as out of memory
        print(fargate.proxy.requests)  # AWS requests by (service, operation)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from .aws_proxy import AwsProxy, ProxyRequest, ProxyResponse
from .moto_server import MotoServer, patched_environ

__all__ = [
    "FargateEmulator",
    "EmulatedTask",
    "FAULTS",
    "ContainerSpec",
    "ContainerRunner",
    "Container",
    "SubprocessRunner",
]

FAULTS = ("oom", "spot_interruption", "never_starts", "cannot_pull", "exit")
"""Faults :meth:`FargateEmulator.inject` knows."""

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
SPOT_REASON = "Your Spot Task was interrupted."
EXITED_REASON = "Essential container in task exited"
PULL_REASON = ("CannotPullContainerError: pull image manifest has been retried 5 time(s): "
               "failed to resolve ref {image}: not found")

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
_ACCOUNT = "123456789012"  # moto's default account, which the fake credentials map to


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """What a runner starts: the container's command and environment, as ECS would."""

    task_arn: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]


class Container(Protocol):
    """A started container (or process)."""

    def poll(self) -> int | None:
        """The exit code once it exited (128+N when killed by signal N), else ``None``."""

    def signal(self, sig: int) -> None:
        """Send ``sig`` (SIGTERM to stop, SIGKILL to kill) if it still runs."""

    def output(self) -> str:
        """Everything it wrote to stdout and stderr so far."""


class ContainerRunner(Protocol):
    """Starts containers for the emulator: the seam for real containers (docker)."""

    def __call__(self, spec: ContainerSpec) -> Container:
        """Start ``spec`` and return at once."""


class _Process:
    def __init__(self, popen: subprocess.Popen[bytes], log: IO[bytes], path: str):
        self._popen = popen
        self._log = log
        self._path = path

    def poll(self) -> int | None:
        code = self._popen.poll()
        if code is None:
            return None
        if not self._log.closed:
            self._log.close()
        return 128 - code if code < 0 else code  # as a container runtime reports a signal

    def signal(self, sig: int) -> None:
        if self._popen.poll() is None:
            try:
                os.killpg(self._popen.pid, sig)
            except ProcessLookupError:
                pass

    def output(self) -> str:
        try:
            return Path(self._path).read_text(errors="replace")
        except OSError:
            return ""


class SubprocessRunner:
    """Runs a container's command as a subprocess of this Python, with only the container's
    environment (plus PATH and this package on PYTHONPATH); ``python`` means ``sys.executable``.
    """

    def __init__(self, log_dir: str | None = None):
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="starburst-fargate-")

    def __call__(self, spec: ContainerSpec) -> Container:
        command = list(spec.command)
        if command and command[0] in ("python", "python3"):
            command[0] = sys.executable
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "STARBURST_", "PYTEST_", "COV_"))}
        env.update(spec.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
        path = os.path.join(self.log_dir, spec.task_arn.rsplit("/", 1)[-1] + ".log")
        log = open(path, "wb")  # noqa: SIM115 - closed when the process is reaped
        popen = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        return _Process(popen, log, path)


@dataclasses.dataclass
class _Fault:
    kind: str
    after: float
    exit_code: int | None
    when_output: str | None


@dataclasses.dataclass
class EmulatedTask:
    """What the emulator did with one ECS task."""

    arn: str
    cluster: str
    region: str
    fault: str | None = None
    container: Container | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    stop_requested_at: float | None = None
    signalled: str | None = None
    fault_after: float = 0.0
    fault_exit_code: int | None = None
    fault_when_output: str | None = None
    fault_armed_at: float | None = None
    log_group: str | None = None
    log_stream: str | None = None
    moto: Any = dataclasses.field(default=None, repr=False)
    starts_at: float | None = None  # end of the modelled cold start
    spec: ContainerSpec | None = dataclasses.field(default=None, repr=False)
    access_key: str = ""  # signs the container's AWS requests: the proxy knows it by this
    # Set once the container's AWS requests may go out (boot_during_cold_start holds them).
    released: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    @property
    def spot(self) -> bool:
        """Whether the task was started with the FARGATE_SPOT capacity provider."""
        return getattr(self.moto, "capacity_provider_name", None) == "FARGATE_SPOT"


class FargateEmulator:
    """Runs the tasks of a moto server's ECS clusters.

    Args:
        moto: a started :class:`MotoServer`.
        runner: starts each task's container (default: :class:`SubprocessRunner`).
        interval: how often the moto backends are looked at, seconds.
        stop_grace: seconds between SIGTERM and SIGKILL when a task is stopped (ECS: 30).
        cold_start: seconds a task stays ``PENDING`` after ``RunTask`` before its container
            starts (Fargate: 30-60 s to provision and pull), to model start-up costs.
        latency: seconds added to every AWS request through :attr:`proxy` (see
            :meth:`AwsProxy.set_latency`), to model a remote S3 (about 0.03).
        boot_during_cold_start: start each container at ``RunTask`` and hold its AWS
            requests until its task is ``RUNNING`` (see the module docstring), so that many
            containers booting on a small machine do not lengthen the modelled cold start.
            A hold longer than a client's read timeout (botocore: 60 s) makes it retry.
        boot: with ``boot_during_cold_start``, seconds from ``RUNNING`` until the held
            requests go out: the boot a task would spend on its own vCPU (Python, imports, a
            boto3 client: about 1 s).

    Attributes:
        proxy: the :class:`AwsProxy` every client of :meth:`env` goes through; its
            ``requests`` count what the client and the workers sent.
    """

    def __init__(
        self,
        moto: MotoServer,
        *,
        runner: ContainerRunner | Callable[[ContainerSpec], Container] | None = None,
        interval: float = 0.02,
        stop_grace: float = 2.0,
        cold_start: float = 0.0,
        latency: float = 0.0,
        boot_during_cold_start: bool = False,
        boot: float = 0.0,
    ):
        self.moto = moto
        self.runner = runner or SubprocessRunner()
        self.interval = interval
        self.stop_grace = stop_grace
        self.proxy = AwsProxy(moto.endpoint)
        self.cold_start = cold_start
        self.boot_during_cold_start = boot_during_cold_start
        self.boot = boot
        if latency:
            self.proxy.set_latency(latency)
        self._lock = threading.RLock()
        self._tasks: dict[str, EmulatedTask] = {}
        self._by_key: dict[str, EmulatedTask] = {}  # by the access key its container signs with
        self._run_at: dict[str, float] = {}  # RunTask's answer, by task ARN, until adopted
        self._ignored: set[str] = set()
        self._faults: collections.deque[_Fault] = collections.deque()
        self._run_task_failures: collections.deque[tuple[str, str | None]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.proxy.add_hook(self._on_request)
        self.proxy.add_observer(self._on_response)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FargateEmulator:
        # Tasks already on the server belong to someone else (an earlier emulator): leave them.
        self._ignored = {arn for backend in self._backends()
                         for tasks in list(backend.tasks.values()) for arn in list(tasks)}
        self.moto.freeze_task_transitions()
        self.proxy.start()
        self._thread = threading.Thread(target=self._loop, name="starburst-fargate-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Kill every container still running, mark its task stopped, stop the proxy."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            tasks = list(self._tasks.values())
        for task in tasks:
            if task.container is not None and not task.stopped:
                task.container.signal(signal.SIGKILL)
                deadline = time.monotonic() + 5
                while task.container.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                self._finish(task, task.container.poll(), "TaskFailedToStart"
                             if task.started_at is None else "UserInitiated",
                             "emulator stopped")
            elif not task.stopped:
                self._finish(task, None, "UserInitiated", "emulator stopped")
        self.proxy.stop()

    def __enter__(self) -> FargateEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment variables that send boto3 to the moto server through the proxy."""
        return {**self.moto.env(), "AWS_ENDPOINT_URL": self.proxy.endpoint}

    def patched_environ(self) -> contextlib.AbstractContextManager[None]:
        """Set :meth:`env` in ``os.environ`` (hiding real credential files) for the block."""
        return patched_environ(self.env())

    # -- faults ---------------------------------------------------------------------------

    def inject(self, fault: str, *, times: int = 1, after: float = 0.0,
               exit_code: int | None = None, when_output: str | None = None) -> None:
        """Give the next ``times`` new tasks ``fault``.

        Args:
            fault: ``"oom"`` (killed ``after`` seconds after starting; exit 137 and an
                ``OutOfMemoryError`` reason), ``"spot_interruption"`` (SIGTERM ``after`` seconds
                after starting, then SIGKILL; stop code ``SpotInterruption``), ``"never_starts"``
                (stays ``PENDING`` until stopped), ``"cannot_pull"`` (stops at once with
                ``TaskFailedToStart`` and a ``CannotPullContainerError``), ``"exit"`` (killed
                ``after`` seconds after starting, reported with ``exit_code``).
            times: how many of the next new tasks get it.
            after: seconds from the container's start (or from ``when_output``) to the fault.
            exit_code: the exit code an ``"exit"`` fault reports.
            when_output: count ``after`` from the moment the container's output first holds
                this text (e.g. once the worker says it started a batch).
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            for _ in range(times):
                self._faults.append(_Fault(fault, after, exit_code, when_output))

    def fail_run_task(self, reason: str = "RESOURCE:FARGATE", *, times: int = 1,
                      detail: str | None = None) -> None:
        """Answer the next ``times`` ``RunTask`` calls with ``failures`` entries and no task.

        ``RESOURCE:FARGATE`` is what ECS says when Fargate has no capacity; a reason such as
        ``"ATTRIBUTE"`` or ``"MISSING"`` is one that retrying does not fix.
        """
        with self._lock:
            for _ in range(times):
                self._run_task_failures.append((reason, detail))

    def s3_slow_down(self, times: int = 1, operation: str | None = None) -> None:
        """Answer the next ``times`` S3 requests (of ``operation``, if given) with 503
        ``SlowDown``."""
        self.proxy.inject_s3_slow_down(times, operation)

    # -- what happened --------------------------------------------------------------------

    @property
    def tasks(self) -> list[EmulatedTask]:
        """Every task seen, in the order they were launched."""
        with self._lock:
            return list(self._tasks.values())

    def running(self) -> list[EmulatedTask]:
        """Tasks not stopped yet (pending or running)."""
        return [t for t in self.tasks if not t.stopped]

    def task_requests(self, task: EmulatedTask) -> dict[tuple[str, str], int]:
        """The AWS requests ``task``'s container sent, by ``(service, operation)`` (since the
        proxy's counts were last reset)."""
        with self.proxy._lock:
            return dict(self.proxy.by_caller.get(task.access_key, {}))

    def wait_stopped(self, timeout: float = 10.0) -> bool:
        """Wait until every task seen is stopped; return whether they all are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return True
            time.sleep(0.02)
        return not self.running()

    # -- proxy hooks ----------------------------------------------------------------------

    def _on_request(self, request: ProxyRequest) -> ProxyResponse | None:
        with self._lock:
            sender = self._by_key.get(request.access_key)
        if sender is not None:
            # A container booting during its task's cold start: its requests wait for RUNNING.
            while not sender.released.wait(0.5) and not self._stopping.is_set():
                pass
            return None
        if request.service != "ecs" or request.operation != "RunTask":
            return None
        with self._lock:
            failure = self._run_task_failures.popleft() if self._run_task_failures else None
        body = request.json()
        if failure is not None:
            reason, detail = failure
            entry = {"arn": "arn:aws:ecs:::task", "reason": reason}
            if detail:
                entry["detail"] = detail
            answer = {"tasks": [], "failures": [entry] * int(body.get("count", 1))}
            return ProxyResponse(200, json.dumps(answer).encode(),
                                 {"Content-Type": "application/x-amz-json-1.1"})
        if "capacityProviderStrategy" in body and "launchType" not in body:
            # moto only places FARGATE launch types; a capacity-provider strategy of
            # FARGATE/FARGATE_SPOT becomes one, and the provider is put back on the task after.
            strategy = body.pop("capacityProviderStrategy")
            body["launchType"] = "FARGATE"
            request.headers["X-Starburst-Capacity-Provider"] = str(
                strategy[0].get("capacityProvider", "FARGATE"))
            request.body = json.dumps(body).encode()
        return None

    def _on_response(self, request: ProxyRequest, status: int, body: bytes) -> None:
        if request.operation == "RunTask" and request.service == "ecs" and status == 200:
            # The cold start counts from here, not from when the data plane takes the task up
            # (it starts containers one at a time: with twenty, the last seconds later).
            now = time.time()
            for task in json.loads(body).get("tasks", []):
                arn = task["taskArn"]
                moto_task = self._find_moto_task(arn)
                with self._lock:
                    if arn in self._tasks:
                        continue  # taken up already
                    self._run_at.setdefault(arn, now)
                    if moto_task is not None and moto_task.last_status == "RUNNING":
                        # As ECS answers: moto has it RUNNING at once, and before the data
                        # plane takes it up (seconds later, the twentieth of twenty) a
                        # DescribeTasks would say so.
                        moto_task.last_status = "PROVISIONING"
        if request.operation == "StopTask" and request.service == "ecs" and status == 200:
            arn = json.loads(body).get("task", {}).get("taskArn")
            self._stop_requested(arn)
        provider = request.headers.get("X-Starburst-Capacity-Provider")
        if provider and status == 200:
            for task in json.loads(body).get("tasks", []):
                moto_task = self._find_moto_task(task["taskArn"])
                if moto_task is not None:
                    moto_task.capacity_provider_name = provider

    def _stop_requested(self, arn: str | None) -> None:
        # Only noted here, for the data plane's thread to act on: it may be starting this very
        # task's container, and a stop applied from this thread was then lost under RUNNING.
        if not arn:
            return
        moto_task = self._find_moto_task(arn)
        with self._lock:
            record = self._tasks.get(arn)
            if record is None or moto_task is None or record.stopped:
                return  # not taken up yet: ``_adopt`` finds it stopped
            if record.stop_requested_at is None:
                record.stop_requested_at = time.time()
            # ECS stops a task by signalling it: it is stopping until the process exits, not
            # STOPPED at once as moto has it.
            moto_task.last_status = "DEACTIVATING"
        self._wake.set()

    # -- the data plane -------------------------------------------------------------------

    def _backends(self) -> list[Any]:
        from moto.ecs.models import ecs_backends

        try:
            regions = ecs_backends[_ACCOUNT]
        except KeyError:
            return []
        return [backend for _, backend in list(regions.items())]

    def _find_moto_task(self, arn: str) -> Any:
        for backend in self._backends():
            for tasks in list(backend.tasks.values()):
                if arn in tasks:
                    return tasks[arn]
        return None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception as exc:  # pragma: no cover - keep the data plane alive
                print(f"starburst fargate emulator: {exc!r}", file=sys.stderr)
            self._wake.wait(self.interval)
            self._wake.clear()

    def _tick(self) -> None:
        for backend in self._backends():
            for cluster, tasks in list(backend.tasks.items()):
                for arn, moto_task in list(tasks.items()):
                    with self._lock:
                        known = arn in self._tasks or arn in self._ignored
                    if not known:
                        self._adopt(backend, cluster, arn, moto_task)
        for task in self.tasks:
            if not task.stopped:
                self._advance(task)

    def _adopt(self, backend: Any, cluster: str, arn: str, moto_task: Any) -> None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            record = EmulatedTask(arn, cluster, backend.region_name, moto=moto_task,
                                  fault=fault.kind if fault else None,
                                  fault_after=fault.after if fault else 0.0,
                                  fault_exit_code=fault.exit_code if fault else None,
                                  fault_when_output=fault.when_output if fault else None)
            self._tasks[arn] = record
        definition = backend.describe_task_definition(moto_task.task_definition_arn)
        container_def = definition.container_definitions[0]
        moto_task.cpu = definition.cpu
        moto_task.memory = definition.memory
        moto_task.created_at = datetime.datetime.now(datetime.timezone.utc)
        options = (container_def.get("logConfiguration") or {}).get("options") or {}
        if options.get("awslogs-group"):
            record.log_group = options["awslogs-group"]
            prefix = options.get("awslogs-stream-prefix", "")
            record.log_stream = f"{prefix}/{container_def.get('name')}/{arn.rsplit('/', 1)[-1]}"
        logger_error = self._check_log_group(record, options)
        if moto_task.desired_status == "STOPPED" or moto_task.last_status == "STOPPED":
            self._finish(record, None, "UserInitiated", moto_task.stopped_reason or "stopped")
            return
        self._set_status(record, "PENDING")
        if record.fault == "never_starts":
            return
        if logger_error:
            self._finish(record, None, "TaskFailedToStart", logger_error)
            return
        if record.fault == "cannot_pull":
            self._finish(record, None, "TaskFailedToStart",
                         PULL_REASON.format(image=container_def.get("image")))
            return
        overrides: dict[str, Any] = next((o for o in moto_task.overrides.get("containerOverrides", [])
                          if o.get("name") == container_def.get("name")), {})
        record.access_key = "ASIAEMU" + arn.rsplit("/", 1)[-1].replace("-", "")[:13].upper()
        env = {**self.env(), "AWS_REGION": backend.region_name,
               "AWS_DEFAULT_REGION": backend.region_name, "AWS_ACCESS_KEY_ID": record.access_key}
        for pair in (container_def.get("environment") or []) + (overrides.get("environment")
                                                               or []):
            env[pair["name"]] = pair["value"]
        command = tuple(overrides.get("command") or container_def.get("command") or ())
        record.spec = ContainerSpec(arn, str(container_def.get("image")), command, env)
        with self._lock:
            run_at = min(self._run_at.pop(arn, time.time()), time.time())
        record.starts_at = run_at + self.cold_start
        with self._lock:
            self._by_key[record.access_key] = record
        if self.cold_start <= 0:
            self._start_container(record)
        elif self.boot_during_cold_start:
            record.container = self.runner(record.spec)  # PENDING; its requests are held

    def _start_container(self, record: EmulatedTask) -> None:
        assert record.spec is not None
        if record.container is None:
            record.container = self.runner(record.spec)
        self._set_running(record)
        if not self.boot_during_cold_start or self.boot <= 0:
            record.released.set()

    def _set_running(self, record: EmulatedTask) -> None:
        record.started_at = time.time()
        record.moto.started_at = datetime.datetime.now(datetime.timezone.utc)
        self._set_status(record, "RUNNING")

    def _set_status(self, record: EmulatedTask, status: str) -> None:
        with self._lock:
            if record.stop_requested_at is not None:
                return  # a StopTask came meanwhile: it stays stopping
            record.moto.last_status = status
            for container in record.moto.containers:
                container.last_status = status

    def _advance(self, task: EmulatedTask) -> None:
        container = task.container
        if container is None:
            if task.stop_requested_at is not None or (
                    task.moto is not None and task.moto.desired_status == "STOPPED"):
                self._finish(task, None, "UserInitiated",
                             task.moto.stopped_reason or "Task stopped by user")
            elif task.spec is not None and time.time() >= (task.starts_at or 0.0):
                self._start_container(task)  # its cold start is over
            return
        now = time.time()
        if task.started_at is None and task.stop_requested_at is None:
            # Booting during its cold start: nothing of it shows before it is RUNNING.
            if now < (task.starts_at or 0.0):
                return
            self._start_container(task)
        if not task.released.is_set() and now >= (task.started_at or now) + self.boot:
            task.released.set()
        code = container.poll()
        if code is None:
            if task.fault_armed_at is None and (
                    task.fault_when_output is None
                    or task.fault_when_output in container.output()):
                task.fault_armed_at = now
            running_for = now - task.fault_armed_at if task.fault_armed_at is not None else -1.0
            if task.stop_requested_at is not None:
                if task.signalled is None:
                    container.signal(signal.SIGTERM)
                    task.signalled = "TERM"
                elif task.signalled != "KILL" and now - task.stop_requested_at > self.stop_grace:
                    container.signal(signal.SIGKILL)
                    task.signalled = "KILL"
            elif task.fault in ("oom", "exit") and 0 <= task.fault_after <= running_for:
                container.signal(signal.SIGKILL)
                task.signalled = "KILL"
            elif task.fault == "spot_interruption" and 0 <= task.fault_after <= running_for:
                if task.signalled is None:
                    container.signal(signal.SIGTERM)
                    task.signalled = "TERM"
                    task.stop_requested_at = now
            return
        if task.stop_requested_at is not None and task.fault != "spot_interruption":
            self._finish(task, code, "UserInitiated",
                         task.moto.stopped_reason if task.moto is not None else "stopped")
        elif task.fault == "oom" and task.signalled == "KILL":
            self._finish(task, 137, "EssentialContainerExited", EXITED_REASON,
                         container_reason=OOM_REASON)
        elif task.fault == "exit" and task.signalled == "KILL":
            self._finish(task, task.fault_exit_code if task.fault_exit_code is not None else 1,
                         "EssentialContainerExited", EXITED_REASON)
        elif task.fault == "spot_interruption" and task.signalled is not None:
            self._finish(task, code, "SpotInterruption", SPOT_REASON)
        else:
            self._finish(task, code, "EssentialContainerExited", EXITED_REASON)

    def _finish(self, task: EmulatedTask, exit_code: int | None, stop_code: str, reason: str,
                *, container_reason: str | None = None) -> None:
        with self._lock:
            if task.stopped:
                return
            task.stopped_at = time.time()
        task.released.set()
        task.exit_code, task.stop_code, task.stopped_reason = exit_code, stop_code, reason
        self._push_logs(task)  # before STOPPED shows, as the awslogs driver flushes first
        moto_task = task.moto
        if moto_task is not None:
            now = datetime.datetime.now(datetime.timezone.utc)
            moto_task.stop_code = stop_code
            moto_task.stopped_reason = moto_task.stopped_reason or reason
            moto_task.stopped_at = now
            moto_task.stopping_at = now
            moto_task.desired_status = "STOPPED"
            for container in moto_task.containers:
                container.last_status = "STOPPED"
                container.exitCode = exit_code
                container.exit_code = exit_code
                if container_reason:
                    container.reason = container_reason
            moto_task.last_status = "STOPPED"

    def _check_log_group(self, task: EmulatedTask, options: dict[str, Any]) -> str | None:
        """As the awslogs driver does at start: a missing group is created with
        ``awslogs-create-group: "true"``, else the task fails to start (ECS's words)."""
        if not task.log_group:
            return None
        logs = self._logs_client(task.region)
        try:
            found = logs.describe_log_groups(logGroupNamePrefix=task.log_group)["logGroups"]
            if any(g["logGroupName"] == task.log_group for g in found):
                return None
            if options.get("awslogs-create-group") == "true":
                logs.create_log_group(logGroupName=task.log_group)
                return None
        finally:
            logs.close()
        return ("ResourceInitializationError: failed to validate logger args: create stream "
                "has been retried 1 times: failed to create Cloudwatch log stream: "
                "ResourceNotFoundException: The specified log group does not exist.")

    def _logs_client(self, region: str) -> Any:
        import boto3

        return boto3.client(
            "logs", region_name=region, endpoint_url=self.moto.endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing")

    def _push_logs(self, task: EmulatedTask) -> None:
        if task.container is None or not task.log_group or not task.log_stream:
            return
        lines = task.container.output().splitlines()
        if not lines:
            return
        import boto3

        logs = boto3.client(
            "logs", region_name=task.region, endpoint_url=self.moto.endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing")
        try:
            try:
                logs.create_log_group(logGroupName=task.log_group)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            logs.create_log_stream(logGroupName=task.log_group, logStreamName=task.log_stream)
            start = int(time.time() * 1000)
            logs.put_log_events(
                logGroupName=task.log_group, logStreamName=task.log_stream,
                logEvents=[{"timestamp": start, "message": line} for line in lines[-1000:]])
        except Exception as exc:  # logs are best effort, as with awslogs
            print(f"starburst fargate emulator: cannot push logs: {exc!r}", file=sys.stderr)
        finally:
            logs.close()
