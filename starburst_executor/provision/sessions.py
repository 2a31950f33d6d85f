"""``starburst status`` and ``logs``: the sessions in the bucket, their tasks, and their logs.

Sessions are found from their ``session.json`` (``s3://<bucket>/<prefix>/sessions/<id>/``), which
the executor writes at start and refreshes (field ``heartbeat``) while it has workers.  Tasks are
found by their tags (``starburst:managed``, ``starburst:session``).  A session is *live* when its
last heartbeat (or, without one, its creation) is newer than ``live_window`` seconds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import _tags
from .._aws import aws_timestamp, error_code
from ..config import Config, sessions_prefix
from ..cost import PriceTable, task_cost
from .common import Clients, is_managed

__all__ = [
    "SessionInfo",
    "TaskInfo",
    "StatusReport",
    "status",
    "logs",
    "parse_duration",
    "read_sessions",
    "list_tasks",
    "task_session",
    "LOG_STREAM_PREFIX",
    "DEFAULT_LIVE_WINDOW",
    "DESCRIBE_MAX",
]

LOG_STREAM_PREFIX = "starburst/worker/"  # launch/fargate.py: awslogs prefix "starburst", container "worker"
DEFAULT_LIVE_WINDOW = 300.0
DESCRIBE_MAX = 100


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """A task of the project, as ECS describes it."""

    task_id: str
    arn: str
    session_id: str | None
    status: str
    cpu: float
    memory: int
    spot: bool
    architecture: str
    started: float | None
    stopped: float | None
    age: float
    cost: float
    task_definition: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    """A session found in the bucket, with its tasks."""

    session_id: str
    backend: str
    created: float
    last_seen: float
    live: bool
    age: float
    tasks: tuple[TaskInfo, ...] = ()

    @property
    def cost(self) -> float:
        """Cost so far of the tasks ECS still reports (running, or stopped within ~an hour)."""
        return sum(t.cost for t in self.tasks)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["cost"] = self.cost
        return data


@dataclasses.dataclass(frozen=True)
class StatusReport:
    """Sessions (newest first) and the project's tasks that belong to no known session."""

    sessions: tuple[SessionInfo, ...]
    other_tasks: tuple[TaskInfo, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"sessions": [s.as_dict() for s in self.sessions],
                "other_tasks": [t.as_dict() for t in self.other_tasks]}


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` or a plain number of days."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
        else:
            seconds = float(value) * 86400
    except ValueError:
        raise ValueError(f"cannot read duration {text!r}: write e.g. 30m, 12h, 7d") from None
    if seconds < 0:
        raise ValueError(f"duration must not be negative: {text!r}")
    return seconds


# -- reading sessions and tasks ----------------------------------------------------------------

def read_sessions(clients: Clients, config: Config, now: float,
                  live_window: float) -> dict[str, SessionInfo]:
    """The sessions in the bucket by id, from their ``session.json`` (blank when it is missing).

    A session's id is the name of the folder listed, never one read from inside an object:
    whoever can write the bucket could otherwise point ``cleanup`` at another session.
    """
    bucket, root = sessions_prefix(config)
    s3 = clients("s3")
    found: dict[str, SessionInfo] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root,
                                                             Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            session_id = common["Prefix"][len(root):].strip("/")
            try:
                body = s3.get_object(Bucket=bucket, Key=f"{common['Prefix']}session.json")["Body"]
                doc = json.loads(body.read())
            except Exception as exc:
                if error_code(exc) not in ("NoSuchKey", "404") and not isinstance(exc, ValueError):
                    raise
                doc = {}
            created, last_seen = _times(doc, now, live_window)
            found[session_id] = SessionInfo(
                session_id=session_id,
                backend=str(doc.get("backend", "?")),
                created=created,
                last_seen=last_seen,
                live=bool(last_seen) and now - last_seen < live_window,
                age=now - created if created else 0.0,
            )
    return found


def _times(doc: Any, now: float, live_window: float) -> tuple[float, float]:
    """(created, last seen) in a ``session.json``; (0, 0) where it holds no plausible time."""
    if not isinstance(doc, dict):
        return 0.0, 0.0
    try:
        created = float(doc.get("created") or 0.0)
        last_seen = float(doc.get("heartbeat") or created)
    except (TypeError, ValueError):
        return 0.0, 0.0
    if last_seen > now + live_window:  # a heartbeat from the future would keep it live forever
        return 0.0, 0.0
    return created, last_seen


def list_tasks(clients: Clients, cluster: str, statuses: Sequence[str]) -> list[dict[str, Any]]:
    """The project's tasks in ``cluster`` with one of ``statuses``, as ECS describes them."""
    ecs = clients("ecs")
    arns: list[str] = []
    try:
        for desired in statuses:
            for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster,
                                                                 desiredStatus=desired):
                arns.extend(page.get("taskArns", []))
    except Exception as exc:
        if error_code(exc) == "ClusterNotFoundException":
            return []
        raise
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), DESCRIBE_MAX):
        tasks.extend(ecs.describe_tasks(cluster=cluster, tasks=arns[start:start + DESCRIBE_MAX],
                                        include=["TAGS"])["tasks"])
    return [t for t in tasks if is_managed(t.get("tags"))]


def task_session(task: Mapping[str, Any]) -> str | None:
    """The session id a task is tagged with."""
    return {t.get("key"): t.get("value") for t in task.get("tags", [])}.get(_tags.SESSION_KEY)


def _task_info(clients: Clients, task: Mapping[str, Any], now: float,
               architectures: dict[str, str], prices: PriceTable | None) -> TaskInfo:
    definition = str(task.get("taskDefinitionArn", ""))
    if definition not in architectures:
        try:
            td = clients("ecs").describe_task_definition(taskDefinition=definition)[
                "taskDefinition"]
            architectures[definition] = str(
                (td.get("runtimePlatform") or {}).get("cpuArchitecture") or "X86_64").lower()
        except Exception:
            architectures[definition] = "x86_64"
    architecture = "arm64" if architectures[definition] == "arm64" else "x86_64"
    started = aws_timestamp(task.get("startedAt") or task.get("pullStartedAt")
                         or task.get("createdAt"))
    stopped = aws_timestamp(task.get("stoppedAt"))
    cpu = int(task.get("cpu") or 1024) / 1024
    memory = int(task.get("memory") or 2048)
    spot = task.get("capacityProviderName") == "FARGATE_SPOT"
    end = stopped or now
    age = max(0.0, end - started) if started else 0.0
    ephemeral = int((task.get("ephemeralStorage") or {}).get("sizeInGiB") or 20)
    cost = task_cost(cpu, memory, age, spot=spot, architecture=architecture,
                     region=clients.region, ephemeral_storage_gib=ephemeral,
                     prices=prices).total if started else 0.0
    return TaskInfo(
        task_id=str(task["taskArn"]).rsplit("/", 1)[-1],
        arn=str(task["taskArn"]),
        session_id=task_session(task),
        status=str(task.get("lastStatus", "?")),
        cpu=cpu,
        memory=memory,
        spot=spot,
        architecture=architecture,
        started=started,
        stopped=stopped,
        age=age,
        cost=cost,
        task_definition=definition,
    )


def status(
    config: Config,
    *,
    clients: Clients | None = None,
    live_window: float = DEFAULT_LIVE_WINDOW,
    include_stopped: bool = True,
    prices: PriceTable | None = None,
    now: float | None = None,
) -> StatusReport:
    """Sessions in the bucket with their age, liveness and cost so far, and the project's tasks.

    Args:
        config: settings (bucket, prefix, cluster, region).
        clients: boto3 clients (default: a new session in ``config.region``).
        live_window: a session is live when its heartbeat is newer than this, in seconds.
        include_stopped: also count tasks ECS still reports as stopped (about an hour).
        prices: a price table for the cost (default: the offline table).
        now: the current time (``time.time()``), for tests.
    """
    clients = clients or Clients(config.region)
    now = time.time() if now is None else now
    sessions = read_sessions(clients, config, now, live_window)
    statuses = ["RUNNING", "STOPPED"] if include_stopped else ["RUNNING"]
    architectures: dict[str, str] = {}
    tasks = [_task_info(clients, t, now, architectures, prices)
             for t in list_tasks(clients, config.cluster, statuses)]
    by_session: dict[str, list[TaskInfo]] = {}
    other: list[TaskInfo] = []
    for task in tasks:
        if task.session_id and task.session_id in sessions:
            by_session.setdefault(task.session_id, []).append(task)
        else:
            other.append(task)
    result = [dataclasses.replace(s, tasks=tuple(by_session.get(s.session_id, ())))
              for s in sessions.values()]
    result.sort(key=lambda s: s.created, reverse=True)
    return StatusReport(tuple(result), tuple(other))


# -- logs --------------------------------------------------------------------------------------

def logs(
    config: Config,
    session_id: str,
    *,
    clients: Clients | None = None,
    task: str | None = None,
    follow: bool = False,
    poll: float = 2.0,
    write: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    max_polls: int | None = None,
) -> int:
    """Write the CloudWatch log lines of a session's tasks (or of one task), oldest first.

    Streams are ``starburst/worker/<task id>`` in ``config.log_group``.  A session's tasks are
    found by their ``starburst:session`` tag among the tasks ECS reports (running, and stopped
    within about an hour); ``task`` names one task directly, at any age.

    Args:
        config: settings (log group, cluster, region).
        session_id: the session (see ``starburst status``).
        clients: boto3 clients.
        task: a task id or ARN: only its stream.
        follow: keep polling for new lines until the session's tasks have stopped (or Ctrl-C).
        poll: seconds between polls when following.
        write: receives each line, prefixed with the task id.
        sleep: waits between polls (tests pass a fake).
        max_polls: stop following after this many polls (tests).

    Returns:
        The number of lines written.
    """
    clients = clients or Clients(config.region)
    cwl = clients("logs")
    seen: set[str] = set()
    written = 0
    start: int | None = None
    polls = 0
    while True:
        if task:
            task_ids = [task.rsplit("/", 1)[-1]]
            active = follow
        else:
            tasks = [t for t in list_tasks(clients, config.cluster, ["RUNNING", "STOPPED"])
                     if task_session(t) == session_id]
            task_ids = [str(t["taskArn"]).rsplit("/", 1)[-1] for t in tasks]
            active = any(t.get("lastStatus") != "STOPPED" for t in tasks)
        streams = [LOG_STREAM_PREFIX + t for t in task_ids]
        for first in range(0, len(streams), 100):
            for event in _events(cwl, config.log_group, streams[first:first + 100], start):
                if event["eventId"] in seen:
                    continue
                seen.add(event["eventId"])
                stream_task = str(event.get("logStreamName", "")).rsplit("/", 1)[-1]
                write(f"{stream_task[:12]} {event.get('message', '').rstrip()}")
                written += 1
                start = max(start or 0, int(event.get("timestamp", 0)))
        polls += 1
        if not follow or not active or (max_polls is not None and polls >= max_polls):
            return written
        sleep(poll)


def _events(cwl: Any, group: str, streams: list[str], start: int | None) -> list[dict[str, Any]]:
    """The log events of ``streams`` (100 at most) from ``start`` on, oldest first."""
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamNames": streams}
    if start is not None:
        kwargs["startTime"] = start
    try:
        pages = list(cwl.get_paginator("filter_log_events").paginate(**kwargs))
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        pages = []
    return sorted((e for p in pages for e in p.get("events", [])),
                  key=lambda e: (e.get("timestamp", 0), e.get("eventId", "")))
