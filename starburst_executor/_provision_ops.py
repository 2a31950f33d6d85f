"""``starburst status``, ``logs``, ``cleanup`` and ``teardown``.

Sessions are found from their ``session.json`` (``s3://<bucket>/<prefix>/sessions/<id>/``), which
the executor writes at start and refreshes (field ``heartbeat``) while it has workers.  Tasks are
found by their tags (``starburst:managed``, ``starburst:session``).  A session is *live* when its
last heartbeat (or, without one, its creation) is newer than ``live_window`` seconds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _tags
from ._provision_common import (
    Clients,
    Log,
    error_code,
    is_managed,
    role_name,
)
from .config import Config, config_path
from .cost import PriceTable, task_cost

__all__ = [
    "SessionInfo",
    "TaskInfo",
    "StatusReport",
    "CleanupReport",
    "status",
    "cleanup",
    "logs",
    "teardown",
    "parse_duration",
    "LOG_STREAM_PREFIX",
]

LOG_STREAM_PREFIX = "starburst/worker/"  # launch/fargate.py: awslogs prefix "starburst", container "worker"
DEFAULT_LIVE_WINDOW = 300.0
_DESCRIBE_MAX = 100


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


@dataclasses.dataclass(frozen=True)
class CleanupReport:
    """What cleanup did (or, with ``dry_run``, would do)."""

    stopped_tasks: tuple[str, ...]
    kept_tasks: tuple[str, ...]
    deleted_sessions: tuple[str, ...]
    deleted_objects: int
    deregistered: tuple[str, ...]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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

def _session_root(config: Config) -> tuple[str, str]:
    """(bucket, key prefix of sessions ending in ``sessions/``)."""
    from .errors import ConfigError

    if config.store and config.store.startswith("s3://"):
        bucket, _, prefix = config.store[len("s3://"):].partition("/")
    else:
        bucket, prefix = config.bucket or "", config.prefix
    if not bucket:
        raise ConfigError("no bucket configured: run `starburst setup` or set STARBURST_BUCKET")
    prefix = prefix.strip("/")
    return bucket, (f"{prefix}/sessions/" if prefix else "sessions/")


def _read_sessions(clients: Clients, config: Config, now: float,
                   live_window: float) -> dict[str, SessionInfo]:
    bucket, root = _session_root(config)
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
            created = float(doc.get("created") or 0.0)
            last_seen = float(doc.get("heartbeat") or created)
            found[session_id] = SessionInfo(
                session_id=str(doc.get("session_id") or session_id),
                backend=str(doc.get("backend", "?")),
                created=created,
                last_seen=last_seen,
                live=bool(last_seen) and now - last_seen < live_window,
                age=now - created if created else 0.0,
            )
    return found


def _list_tasks(clients: Clients, cluster: str, statuses: Sequence[str]) -> list[dict[str, Any]]:
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
    for start in range(0, len(arns), _DESCRIBE_MAX):
        tasks.extend(ecs.describe_tasks(cluster=cluster, tasks=arns[start:start + _DESCRIBE_MAX],
                                        include=["TAGS"])["tasks"])
    return [t for t in tasks if is_managed(t.get("tags"))]


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


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
    tags = {t.get("key"): t.get("value") for t in task.get("tags", [])}
    started = _timestamp(task.get("startedAt") or task.get("pullStartedAt")
                         or task.get("createdAt"))
    stopped = _timestamp(task.get("stoppedAt"))
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
        session_id=tags.get(_tags.SESSION_KEY),
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
    sessions = _read_sessions(clients, config, now, live_window)
    statuses = ["RUNNING", "STOPPED"] if include_stopped else ["RUNNING"]
    architectures: dict[str, str] = {}
    tasks = [_task_info(clients, t, now, architectures, prices)
             for t in _list_tasks(clients, config.cluster, statuses)]
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


# -- cleanup -----------------------------------------------------------------------------------

def cleanup(
    config: Config,
    *,
    clients: Clients | None = None,
    older_than: float = 7 * 86400.0,
    live_window: float = DEFAULT_LIVE_WINDOW,
    dry_run: bool = False,
    log: Log = print,
    now: float | None = None,
) -> CleanupReport:
    """Stop orphaned tasks, delete old session data, deregister stale task definitions.

    A task tagged by this project is orphaned when its session is not live and it started more
    than ``live_window`` ago (a session that just started may not have written its
    ``session.json`` yet).  Session data is deleted when the session is not live and was last
    seen more than ``older_than`` seconds ago.  A task definition tagged by this project is stale
    when no running task uses it and it was registered more than ``older_than`` ago.

    Args:
        config: settings (bucket, prefix, cluster, region).
        clients: boto3 clients (default: a new session in ``config.region``).
        older_than: age in seconds beyond which session data and task definitions go.
        live_window: see the module docstring.
        dry_run: report only; make no change.
        log: receives one line per action.
        now: the current time, for tests.
    """
    clients = clients or Clients(config.region)
    now = time.time() if now is None else now
    verb = "would " if dry_run else ""
    sessions = _read_sessions(clients, config, now, live_window)
    ecs = clients("ecs")
    running = _list_tasks(clients, config.cluster, ["RUNNING"])
    stopped: list[str] = []
    kept: list[str] = []
    in_use: set[str] = set()
    for task in running:
        tags = {t.get("key"): t.get("value") for t in task.get("tags", [])}
        session_id = tags.get(_tags.SESSION_KEY)
        session = sessions.get(session_id or "")
        task_id = str(task["taskArn"]).rsplit("/", 1)[-1]
        started = _timestamp(task.get("startedAt") or task.get("createdAt")) or now
        if (session is not None and session.live) or now - started < live_window:
            kept.append(task_id)
            in_use.add(str(task.get("taskDefinitionArn")))
            continue
        why = "no session" if session is None else "session not live"
        log(f"  {verb}stop task {task_id} (session {session_id or '?'}: {why})")
        if not dry_run:
            ecs.stop_task(cluster=config.cluster, task=task["taskArn"],
                          reason=f"starburst cleanup: {why}")
        stopped.append(task_id)
    bucket, _ = _session_root(config)
    deleted_sessions: list[str] = []
    deleted_objects = 0
    root = _session_root(config)[1]
    for session in sessions.values():
        last_seen = session.last_seen
        if not last_seen:
            # No session.json yet: a session that is starting uploads its function and batches
            # first, so its newest object says how old it is.
            last_seen = _newest_object(clients, bucket, f"{root}{session.session_id}/")
        if session.live or now - last_seen < older_than:
            continue
        session = dataclasses.replace(session, last_seen=last_seen)
        count = _delete_prefix(clients, bucket, f"{root}{session.session_id}/", dry_run)
        log(f"  {verb}delete session {session.session_id} ({count} objects, last seen "
            f"{_ago(now - session.last_seen)} ago)")
        deleted_sessions.append(session.session_id)
        deleted_objects += count
    deregistered: list[str] = []
    for arn, registered in _managed_task_definitions(clients):
        if arn in in_use or (registered is not None and now - registered < older_than):
            continue
        log(f"  {verb}deregister task definition {arn.rsplit('/', 1)[-1]}")
        if not dry_run:
            ecs.deregister_task_definition(taskDefinition=arn)
        deregistered.append(arn)
    if not (stopped or deleted_sessions or deregistered):
        log("  nothing to clean up")
    return CleanupReport(tuple(stopped), tuple(kept), tuple(deleted_sessions), deleted_objects,
                         tuple(deregistered), dry_run)


def _ago(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def _newest_object(clients: Clients, bucket: str, prefix: str) -> float:
    newest = 0.0
    for page in clients("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix):
        for item in page.get("Contents", []):
            newest = max(newest, _timestamp(item.get("LastModified")) or 0.0)
    return newest


def _delete_prefix(clients: Clients, bucket: str, prefix: str, dry_run: bool) -> int:
    s3 = clients("s3")
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        count += len(keys)
        if keys and not dry_run:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    return count


def _managed_task_definitions(clients: Clients) -> Iterator[tuple[str, float | None]]:
    ecs = clients("ecs")
    for page in ecs.get_paginator("list_task_definitions").paginate(status="ACTIVE"):
        for arn in page.get("taskDefinitionArns", []):
            if not arn.rsplit("/", 1)[-1].startswith("starburst"):
                continue  # the launcher names its families starburst-<hash>
            described = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
            if is_managed(described.get("tags")):
                yield arn, _timestamp(described["taskDefinition"].get("registeredAt"))


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
            tasks = [t for t in _list_tasks(clients, config.cluster, ["RUNNING", "STOPPED"])
                     if {x.get("key"): x.get("value") for x in t.get("tags", [])}.get(
                         _tags.SESSION_KEY) == session_id]
            task_ids = [str(t["taskArn"]).rsplit("/", 1)[-1] for t in tasks]
            active = any(t.get("lastStatus") != "STOPPED" for t in tasks)
        streams = [LOG_STREAM_PREFIX + t for t in task_ids]
        for first in range(0, len(streams), 100):
            kwargs: dict[str, Any] = {"logGroupName": config.log_group,
                                      "logStreamNames": streams[first:first + 100]}
            if start is not None:
                kwargs["startTime"] = start
            try:
                pages = list(cwl.get_paginator("filter_log_events").paginate(**kwargs))
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    pages = []
                else:
                    raise
            events = sorted((e for p in pages for e in p.get("events", [])),
                            key=lambda e: (e.get("timestamp", 0), e.get("eventId", "")))
            for event in events:
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


# -- teardown ----------------------------------------------------------------------------------

def teardown(
    config: Config,
    *,
    clients: Clients | None = None,
    keep_bucket: bool = False,
    repository: str = "starburst-worker",
    security_group: str = "starburst-workers",
    config_file: Path | None = None,
    log: Log = print,
) -> list[str]:
    """Delete what ``starburst setup`` created: only resources tagged ``starburst:managed``.

    Stops the project's running tasks first, deregisters its task definitions, then deletes the
    cluster, log group, security group, image repository, bucket (emptied first, unless
    ``keep_bucket``) and both roles, and removes the settings setup wrote from the config file.

    Returns:
        One line per resource, saying what happened to it.
    """
    clients = clients or Clients(config.region)
    done: list[str] = []

    def say(line: str) -> None:
        done.append(line)
        log(f"  {line}")

    ecs = clients("ecs")
    stopping: list[str] = []
    for task in _list_tasks(clients, config.cluster, ["RUNNING"]):
        ecs.stop_task(cluster=config.cluster, task=task["taskArn"], reason="starburst teardown")
        stopping.append(str(task["taskArn"]))
        say(f"stopping task {str(task['taskArn']).rsplit('/', 1)[-1]}")
    if stopping:
        # The cluster and the security group cannot go while tasks still hold them.
        log("  waiting for the tasks to stop...")
        waiter = ecs.get_waiter("tasks_stopped")
        for first in range(0, len(stopping), _DESCRIBE_MAX):
            try:
                waiter.wait(cluster=config.cluster, tasks=stopping[first:first + _DESCRIBE_MAX],
                            WaiterConfig={"Delay": 6, "MaxAttempts": 50})
            except Exception as exc:
                say(f"tasks did not all stop in time ({exc}); run teardown again later")
    for arn, _ in _managed_task_definitions(clients):
        ecs.deregister_task_definition(taskDefinition=arn)
        say(f"deregistered task definition {arn.rsplit('/', 1)[-1]}")
    clusters = ecs.describe_clusters(clusters=[config.cluster], include=["TAGS"])["clusters"]
    cluster = next((c for c in clusters if c.get("status") == "ACTIVE"), None)
    if cluster is None:
        say(f"cluster {config.cluster}: not found")
    elif is_managed(cluster.get("tags")):
        ecs.delete_cluster(cluster=config.cluster)
        say(f"deleted cluster {config.cluster}")
    else:
        say(f"kept cluster {config.cluster} (not created by starburst setup)")

    cwl = clients("logs")
    groups = cwl.describe_log_groups(logGroupNamePrefix=config.log_group)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == config.log_group), None)
    if group is None:
        say(f"log group {config.log_group}: not found")
    elif is_managed(cwl.list_tags_log_group(logGroupName=config.log_group).get("tags", {})):
        cwl.delete_log_group(logGroupName=config.log_group)
        say(f"deleted log group {config.log_group}")
    else:
        say(f"kept log group {config.log_group} (not created by starburst setup)")

    ec2 = clients("ec2")
    for group_id in config.security_groups:
        try:
            sg = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        except Exception as exc:
            if error_code(exc) not in ("InvalidGroup.NotFound", "InvalidGroupId.Malformed"):
                raise
            say(f"security group {group_id}: not found")
            continue
        if is_managed(sg.get("Tags")) and sg.get("GroupName") == security_group:
            try:
                ec2.delete_security_group(GroupId=group_id)
            except Exception as exc:
                if error_code(exc) != "DependencyViolation":
                    raise
                say(f"kept security group {group_id} for now: network interfaces of stopped "
                    "tasks still use it; run `starburst teardown` again in a few minutes")
                continue
            say(f"deleted security group {group_id}")
        else:
            say(f"kept security group {group_id} (not created by starburst setup)")

    ecr = clients("ecr")
    try:
        repo = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
        tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags", [])
        if is_managed(tags):
            ecr.delete_repository(repositoryName=repository, force=True)
            say(f"deleted image repository {repository} and its images")
        else:
            say(f"kept image repository {repository} (not created by starburst setup)")
    except Exception as exc:
        if error_code(exc) != "RepositoryNotFoundException":
            raise
        say(f"image repository {repository}: not found")

    if config.bucket:
        _teardown_bucket(clients, config.bucket, keep_bucket, say)

    iam = clients("iam")
    for role in (config.task_role, config.execution_role):
        name = role_name(role)
        try:
            found = iam.get_role(RoleName=name)["Role"]
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            say(f"role {name}: not found")
            continue
        tags = found.get("Tags") or iam.list_role_tags(RoleName=name).get("Tags", [])
        if not is_managed(tags):
            say(f"kept role {name} (not created by starburst setup)")
            continue
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
            for policy in page["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
            for policy_name in page["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        iam.delete_role(RoleName=name)
        say(f"deleted role {name}")

    path = config_file or config_path()
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            for key in ("region", "bucket", "prefix", "cluster", "subnets", "security_groups",
                        "execution_role", "task_role", "log_group", "image"):
                data.pop(key, None)
            if data:
                from .config import write_config_file

                write_config_file(data, path)
                say(f"removed the settings of setup from {path}")
            else:
                path.unlink()
                say(f"deleted {path}")
    return done


def _teardown_bucket(clients: Clients, bucket: str, keep: bool, say: Callable[[str], None]) -> None:
    s3 = clients("s3")
    try:
        tags = s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])
    except Exception as exc:
        code = error_code(exc)
        if code == "NoSuchBucket":
            say(f"bucket {bucket}: not found")
            return
        if code != "NoSuchTagSet":
            raise
        tags = []
    if not is_managed(tags):
        say(f"kept bucket {bucket} (not created by starburst setup)")
        return
    if keep:
        say(f"kept bucket {bucket} (--keep-bucket)")
        return
    count = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        keys = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            count += len(keys)
    s3.delete_bucket(Bucket=bucket)
    say(f"deleted bucket {bucket} ({count} objects)")
