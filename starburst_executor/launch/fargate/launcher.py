"""Workers as ECS Fargate tasks: the ``fargate`` backend's launcher.

::

    prepare()     --> task definition and network looked up in the background (lookups.py)
    launch(specs) --> the image (configured, else built once with auto_build: see auto_build.py)
                  --> task definition and network (lookups.py, taskdef.py; looked up once)
                  --> RunTask (<= 10 tasks a call, < 20 calls/s; overrides carry the env keys)
    poll(handles) --> DescribeTasks (<= 100 tasks a call; STOPPED tasks are not asked again)
    stop/close    --> StopTask for every task started here and not known to be stopped, retried
                      with backoff (stopping.py); a task that cannot be stopped is warned of,
                      counted in stats.not_stopped (usage, max_cost) and reported STOPPED to
                      the manager so no wait on it lasts forever; close() tries it once more
    capacity      --> the vCPU quota left (quotas.py): the work runs in waves that fit
    log_tail      --> CloudWatch Logs GetLogEvents on the task's awslogs stream

Nothing here talks to AWS before ``prepare``, the first ``launch`` or ``capacity``:
:meth:`from_config` only validates.  Every botocore error goes through
:func:`starburst_executor._aws.translate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import logging
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from typing import Any

import botocore.exceptions

from ... import _aws, _tags, _threads
from ..._stats import RequestStats
from ...config import Config
from ...errors import ConfigError, LaunchError, StarburstError
from ..auto_build import WorkerImage
from ..base import LaunchFailure, TaskHandle, TaskPhase, TaskState, WorkerSpec
from . import quotas, sizes, stopping
from .lookups import Lookups
from .taskdef import CONTAINER_NAME, LOG_STREAM_PREFIX

__all__ = ["FargateLauncher"]

log = logging.getLogger(__name__)

RUN_TASK_MAX = 10  # tasks per RunTask call (ECS limit)
DESCRIBE_TASKS_MAX = 100  # tasks per DescribeTasks call (ECS limit)
CALLS_PER_SECOND = 15.0  # RunTask/StopTask pace, under ECS's 20 calls/s
CALLS_BURST = 20  # of those at once (Fargate launches 100 tasks at once, 20 a second after)
LAUNCH_THREADS = 10  # RunTask calls in flight at once: twenty tasks start together, not in 2 s
OVERRIDES_MAX_BYTES = 8192  # ECS limit on a RunTask's overrides

_SERVICE_NAMES = {"cloudwatch-logs": "logs"}  # botocore event names use service ids
_PENDING = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
_STOPPED = frozenset({"STOPPED", "DELETED"})
# RunTask failure reasons worth another try later: capacity, quotas, throttling, networking.
_RETRYABLE_HINTS = ("resource", "capacity", "limit", "throttl", "rate exceeded", "try again",
                    "timeout", "eni", "agent")


class _Pace:
    """At most ``rate`` calls per second on average, up to ``burst`` of them at once (a token
    bucket of ``burst``, kept as the time its next token is due)."""

    def __init__(self, rate: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep):
        self._interval = 1.0 / rate
        self._slack = (max(1, burst) - 1) * self._interval
        self._next = -math.inf
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            due = max(now - self._slack, self._next)
            self._next = due + self._interval
        if due > now:
            self._sleep(due - now)


def _groups(specs: Sequence[WorkerSpec]) -> list[Sequence[WorkerSpec]]:
    """One RunTask call each: workers with the same environment share one (count > 1); the
    usual specs differ by worker id, so each is its own call."""
    groups: list[Sequence[WorkerSpec]] = []
    start = 0
    while start < len(specs):
        end = start + 1
        while (end < len(specs) and end - start < RUN_TASK_MAX
               and specs[end].env == specs[start].env):
            end += 1
        groups.append(specs[start:end])
        start = end
    return groups


def _side_by_side(run: Callable[[Sequence[WorkerSpec]], list[TaskHandle | LaunchFailure]],
                  groups: list[Sequence[WorkerSpec]]) -> list[TaskHandle | LaunchFailure]:
    """``run`` each group, up to ``LAUNCH_THREADS`` at once; the outcomes in order."""
    if len(groups) == 1:
        return run(groups[0])
    try:
        with ThreadPoolExecutor(min(LAUNCH_THREADS, len(groups)),
                                thread_name_prefix="starburst-launch") as pool:
            results = list(pool.map(run, groups))
    except RuntimeError:  # at interpreter exit no thread may start: one by one
        results = [run(group) for group in groups]
    return [outcome for result in results for outcome in result]


@dataclasses.dataclass
class _Task:
    handle: TaskHandle
    state: TaskState
    stop_requested: bool = False
    stop_error: str | None = None  # why StopTask failed, while the task may still run


def _retryable(reason: str) -> bool:
    lowered = reason.lower()
    return any(hint in lowered for hint in _RETRYABLE_HINTS)


def _task_state(handle: TaskHandle, task: dict[str, Any]) -> TaskState:
    """What a DescribeTasks entry says of a worker."""
    last = str(task.get("lastStatus") or "PENDING")
    if last in _STOPPED:
        phase = TaskPhase.STOPPED
    elif last in _PENDING:
        phase = TaskPhase.PENDING
    else:
        phase = TaskPhase.RUNNING
    containers = task.get("containers") or []
    container = next((c for c in containers if c.get("name") == CONTAINER_NAME),
                     containers[0] if containers else {})
    exit_code = container.get("exitCode") if phase is TaskPhase.STOPPED else None
    reasons = [r for r in (task.get("stoppedReason"), container.get("reason")) if r]
    stop_code = task.get("stopCode") or None
    return TaskState(
        handle=handle,
        phase=phase,
        exit_code=int(exit_code) if exit_code is not None else None,
        stop_code=stop_code,
        stopped_reason="; ".join(reasons) or None,
        started_at=_aws.aws_timestamp(task.get("startedAt")),
        stopped_at=_aws.aws_timestamp(task.get("stoppedAt")) if phase is TaskPhase.STOPPED else None,
        interrupted=stop_code == "SpotInterruption",
    )


def _refused(spec: WorkerSpec, failure: dict[str, Any], cluster: str) -> LaunchFailure:
    """The failure of a worker that a RunTask answer has a ``failures`` entry for."""
    reason = str(failure.get("reason") or "no task and no reason given")
    detail = failure.get("detail")
    text = f"ECS could not start a Fargate task: {reason}" + (f" ({detail})" if detail else "")
    retryable = _retryable(reason)
    if not retryable:
        text += (f"; check the cluster {cluster!r}, the image and the networking settings with "
                 "`starburst doctor`")
    return LaunchFailure(spec.worker_id, text, retryable=retryable)


class FargateLauncher:
    """Starts each worker as one ECS Fargate task in ``config.cluster``.

    Args:
        config: the executor's settings (size, image, cluster, networking, roles, logs).
        session_id: tags every task (``starburst:session``) so ``starburst cleanup`` finds it.
        store_url: the session's store; not used here (the manager puts it in each spec's env).
        vcpu_quota_fallback: the Fargate vCPU quota to assume when Service Quotas cannot be
            read (default: ``STARBURST_FARGATE_VCPU_QUOTA``, else no cap).
        max_attempts: attempts per AWS request, the first included, with adaptive backoff
            (throttling, 5xx) in between.  A poll that still fails reports the last known
            states; the manager polls again later.
    """

    poll_interval = (1.0, 5.0)

    def __init__(
        self,
        config: Config,
        session_id: str,
        store_url: str = "",
        *,
        vcpu_quota_fallback: float | None = None,
        max_attempts: int = 5,
    ):
        self.config = config
        self.max_attempts = max_attempts
        self.session_id = session_id
        self.store_url = store_url
        self.cpu_units, self.memory = sizes.validate_size(config.cpu, config.memory)
        sizes.validate_ephemeral_storage(config.ephemeral_storage)
        if config.region:
            sizes.validate_region(config.region)
        self._image = WorkerImage.from_config(config, push=True)
        if self._image.known is None and not self._image.pending:
            raise ConfigError(
                "no worker image is configured for the fargate backend: run `starburst build` "
                "(it builds and pushes the image and records it in the config file), or pass "
                "image=... / set STARBURST_IMAGE, or auto_build=True"
            )
        self.stats = RequestStats()
        self._quota_fallback = vcpu_quota_fallback
        self._lock = threading.RLock()
        self._clients: dict[str, Any] = {}
        self._region: str | None = config.region
        self._lookups = Lookups(config, self._image, lambda: self.region, self._client)
        self._tasks: dict[str, _Task] = {}  # by task ARN, in launch order
        self._pace = _Pace(CALLS_PER_SECOND, CALLS_BURST)
        self._capacity: int | None = None
        self._closed = False

    @classmethod
    def from_config(
        cls, config: Config, session_id: str, store_url: str, **kwargs: Any
    ) -> FargateLauncher:
        """Validate ``config`` for Fargate (sizes, region, image) without any network call.
        With ``auto_build`` and no image, the image is built at the first launch.

        Raises:
            ConfigError: an invalid size, region or a missing image, naming the fix.
        """
        return cls(config, session_id, store_url, **kwargs)

    @property
    def image(self) -> str | None:
        """The worker image; None until an ``auto_build`` image is built."""
        return self._image.known

    # -- clients -------------------------------------------------------------------------

    @property
    def region(self) -> str:
        if self._region is None:
            self._region = _aws.resolve_region(None)
        return self._region

    def _client(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
        if client is not None:
            return client
        # Made outside the lock (each from a session of its own): making one reads botocore's
        # model of the service (EC2's: ~0.1 s), and the first lookups make several at once.
        made = _aws.client(service, self.region, retry_mode="adaptive",
                           max_attempts=self.max_attempts)
        with self._lock:
            client = self._clients.setdefault(service, made)
            if client is made:
                client.meta.events.register("before-send", self._count_request)
        return client

    def _count_request(self, event_name: str = "", **_: Any) -> None:
        # event_name: before-send.<service>.<Operation>
        parts = event_name.split(".")
        service, operation = (parts[1], parts[2]) if len(parts) >= 3 else ("", event_name)
        service = _SERVICE_NAMES.get(service, service)
        with self._lock:
            # ECS operations by name; the few calls to other services as "service.Operation".
            self.stats.count(operation if service == "ecs" else f"{service}.{operation}")

    def _fail(self, exc: BaseException, operation: str, resource: str = "") -> StarburstError:
        service = "ecs"
        return _aws.translate(exc, service=service, operation=operation,
                              resource=resource or f"cluster {self.config.cluster}")

    # -- the Launcher protocol ------------------------------------------------------------

    def prepare(self) -> None:
        if not self._closed:
            self._lookups.start()

    def launch(self, specs: Sequence[WorkerSpec]) -> list[TaskHandle | LaunchFailure]:
        if not specs:
            return []
        try:
            task_definition, network = self._lookups.get()
        except StarburstError as exc:
            # The botocore error behind a translated one is its __context__ ("from None").
            retryable = _aws.is_transient(exc.__cause__ or exc.__context__ or exc)
            return [LaunchFailure(s.worker_id, str(exc), retryable=retryable) for s in specs]
        return _side_by_side(lambda group: self._run(group, task_definition, network),
                             _groups(specs))

    def _run(self, group: Sequence[WorkerSpec], task_definition: str, network: dict[str, Any]
             ) -> list[TaskHandle | LaunchFailure]:
        # The thread pools' size (see _threads): the task's vCPUs, not the host's cores.
        env = {**group[0].env, _threads.ENV_CPU_SHARE: f"{self.config.cpu:g}"}
        overrides = {
            "containerOverrides": [{
                "name": CONTAINER_NAME,
                "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
            }]
        }
        size = len(json.dumps(overrides))
        if size > OVERRIDES_MAX_BYTES:
            return [LaunchFailure(s.worker_id, (
                f"the worker environment is {size} bytes, over ECS's {OVERRIDES_MAX_BYTES}-byte "
                "limit on RunTask overrides; shorten the store URL or prefix"), retryable=False)
                for s in group]
        args: dict[str, Any] = {
            "cluster": self.config.cluster,
            "taskDefinition": task_definition,
            "count": len(group),
            "networkConfiguration": network,
            "overrides": overrides,
            "tags": [{"key": k, "value": v}
                     for k, v in _tags.resource_tags(self.session_id).items()],
            "startedBy": f"starburst-{self.session_id}"[:128],
        }
        if self.config.spot:
            args["capacityProviderStrategy"] = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
        else:
            args["launchType"] = "FARGATE"
        self._pace.wait()
        try:
            response = self._client("ecs").run_task(**args)
        except Exception as exc:
            error = self._fail(exc, "RunTask")
            retryable = _aws.is_transient(exc) or _retryable(_aws.error_code(exc))
            if _aws.error_code(exc) == "ClusterNotFoundException":
                error = LaunchError(
                    f"ECS cluster {self.config.cluster!r} does not exist in {self.region}: run "
                    "`starburst setup`, or set cluster=... / STARBURST_CLUSTER"
                )
            return [LaunchFailure(s.worker_id, str(error), retryable=retryable) for s in group]
        tasks = response.get("tasks", [])
        failures = response.get("failures", [])
        out: list[TaskHandle | LaunchFailure] = []
        now = time.time()
        with self._lock:
            for i, spec in enumerate(group):
                if i < len(tasks):
                    arn = str(tasks[i]["taskArn"])
                    handle = TaskHandle(spec.worker_id, arn)
                    self._tasks[arn] = _Task(handle, TaskState(handle, TaskPhase.PENDING))
                    self.stats.tasks_started += 1
                    out.append(handle)
                    continue
                failure = failures[min(i - len(tasks), len(failures) - 1)] if failures else {}
                out.append(_refused(spec, failure, self.config.cluster))
        log.debug("RunTask: %d started, %d failed at %.3f", len(tasks), len(failures), now)
        return out

    def poll(self, handles: Sequence[TaskHandle]) -> list[TaskState]:
        with self._lock:
            known = {h.task_id: self._tasks.get(h.task_id) for h in handles}
        ask = [arn for arn, t in known.items()
               if t is None or t.state.phase is not TaskPhase.STOPPED]
        found: dict[str, dict[str, Any]] = {}
        missing: set[str] = set()
        for start in range(0, len(ask), DESCRIBE_TASKS_MAX):
            chunk = ask[start:start + DESCRIBE_TASKS_MAX]
            try:
                response = self._client("ecs").describe_tasks(cluster=self.config.cluster,
                                                              tasks=chunk)
            except Exception as exc:
                if _aws.is_transient(exc) or isinstance(exc, botocore.exceptions.BotoCoreError):
                    # Still throttled (or unreachable) after botocore's backoff: report what
                    # was known; the manager polls again later, backing off meanwhile.
                    log.debug("DescribeTasks failed for now (%s); keeping the last states", exc)
                    continue
                raise self._fail(exc, "DescribeTasks") from None
            for task in response.get("tasks", []):
                found[task["taskArn"]] = task
            for failure in response.get("failures", []):
                if failure.get("reason") == "MISSING" and failure.get("arn"):
                    missing.add(failure["arn"])
        states = []
        with self._lock:
            for handle in handles:
                record = self._tasks.get(handle.task_id)
                if record is None:  # not started here: reported, never stopped by close()
                    record = _Task(handle, TaskState(handle, TaskPhase.PENDING))
                if handle.task_id in found:
                    record.state = _task_state(handle, found[handle.task_id])
                elif handle.task_id in missing:
                    record.state = dataclasses.replace(
                        record.state, phase=TaskPhase.STOPPED,
                        stopped_reason="ECS no longer knows this task (stopped long ago?)",
                        stopped_at=record.state.stopped_at or time.time())
                if record.state.phase is TaskPhase.STOPPED:
                    self.stats.not_stopped.pop(handle.worker_id, None)
                    states.append(record.state)
                elif record.stop_error is not None:  # given up: see stopping.record
                    states.append(stopping.given_up(handle, record.stop_error))
                else:
                    states.append(record.state)
        return states

    def stop(self, handles: Sequence[TaskHandle], reason: str, *, again: bool = False) -> None:
        """StopTask each task not stopped or being stopped (``again``: also those a stop
        failed for), retried with backoff for a bounded time; warn of those it fails for."""
        with self._lock:
            todo = stopping.claim(self._tasks, handles, again)
        if not todo:
            return
        text = (reason or "stopped by starburst")[:255]

        def stop_one(task_id: str) -> None:
            self._pace.wait()
            self._client("ecs").stop_task(cluster=self.config.cluster, task=task_id, reason=text)

        failed = stopping.stop_tasks(stop_one, [h.task_id for h in todo])
        with self._lock:
            messages = stopping.record(self._tasks, self.stats, todo, failed, self.config.cluster)
        for message in messages:
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def capacity(self, wanted: int) -> int:
        if self._capacity is None:
            self._capacity = quotas.workers_within_quota(
                wanted, self.cpu_units / 1024, self.config.cluster, self.region,
                spot=self.config.spot, fallback=self._quota_fallback,
                quotas_client=self._client("service-quotas"), ecs_client=self._client("ecs"))
        return min(wanted, self._capacity)

    def log_tail(self, handle: TaskHandle, lines: int = 20) -> str:
        return _log_tail(self._client("logs"), self.config.log_group, handle.task_id, lines)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = [t.handle for t in self._tasks.values()]
        if handles:
            self.stop(handles, "starburst executor shut down", again=True)
        # The clients stay open: close() may run from an atexit hook while the manager thread
        # is mid-request with them; their connections go with the launcher.

    def __repr__(self) -> str:
        return (f"FargateLauncher(cluster={self.config.cluster!r}, cpu={self.config.cpu:g}, "
                f"memory={self.memory}, tasks={len(self._tasks)})")


def _log_tail(logs: Any, group: str, task_arn: str, lines: int) -> str:
    """The last ``lines`` lines a task's container logged, or "" when there are none (yet)."""
    task_id = task_arn.rsplit("/", 1)[-1]
    try:
        response = logs.get_log_events(
            logGroupName=group,
            logStreamName=f"{LOG_STREAM_PREFIX}/{CONTAINER_NAME}/{task_id}",
            limit=lines,
            startFromHead=False,
        )
    except Exception as exc:  # no stream yet, no permission: the tail is best effort
        log.debug("no log tail for %s: %s", task_arn, exc)
        return ""
    return "\n".join(str(e.get("message", "")).rstrip("\n") for e in response.get("events", []))
