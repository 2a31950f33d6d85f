"""``starburst cleanup`` and ``teardown``: stop orphaned tasks, delete old data, remove it all.

Cleanup keeps what a live session uses (see :mod:`.sessions` for what *live* means); teardown
deletes only what ``starburst setup`` created, i.e. what is tagged ``starburst:managed``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._aws import aws_timestamp, error_code
from ..config import Config, read_config_file, sessions_prefix, update_config_file
from .common import Clients, Log, is_managed, role_name, unless_missing
from .sessions import (
    DEFAULT_LIVE_WINDOW,
    DESCRIBE_MAX,
    SessionInfo,
    list_tasks,
    read_sessions,
    task_session,
)

__all__ = ["CleanupReport", "cleanup", "teardown"]

# What setup writes into the config file, and teardown takes out again.
_SETUP_SETTINGS = ("region", "bucket", "prefix", "cluster", "subnets", "security_groups",
                   "execution_role", "task_role", "log_group", "image")


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
        live_window: see :mod:`.sessions`.
        dry_run: report only; make no change.
        log: receives one line per action.
        now: the current time, for tests.
    """
    clients = clients or Clients(config.region)
    now = time.time() if now is None else now
    verb = "would " if dry_run else ""
    sessions = read_sessions(clients, config, now, live_window)
    stopped, kept, in_use = _stop_orphans(clients, config, sessions, now, live_window, dry_run,
                                          lambda line: log(f"  {verb}{line}"))
    deleted_sessions, deleted_objects = _delete_old_sessions(
        clients, config, sessions, now, older_than, dry_run, lambda line: log(f"  {verb}{line}"))
    ecs = clients("ecs")
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


def _stop_orphans(
    clients: Clients, config: Config, sessions: dict[str, SessionInfo], now: float,
    live_window: float, dry_run: bool, log: Log,
) -> tuple[list[str], list[str], set[str]]:
    """Stop the running tasks of no live session: (stopped, kept, task definitions in use)."""
    ecs = clients("ecs")
    stopped: list[str] = []
    kept: list[str] = []
    in_use: set[str] = set()
    for task in list_tasks(clients, config.cluster, ["RUNNING"]):
        session_id = task_session(task)
        session = sessions.get(session_id or "")
        task_id = str(task["taskArn"]).rsplit("/", 1)[-1]
        started = aws_timestamp(task.get("startedAt") or task.get("createdAt")) or now
        if (session is not None and session.live) or now - started < live_window:
            kept.append(task_id)
            in_use.add(str(task.get("taskDefinitionArn")))
            continue
        why = "no session" if session is None else "session not live"
        log(f"stop task {task_id} (session {session_id or '?'}: {why})")
        if not dry_run:
            ecs.stop_task(cluster=config.cluster, task=task["taskArn"],
                          reason=f"starburst cleanup: {why}")
        stopped.append(task_id)
    return stopped, kept, in_use


def _delete_old_sessions(
    clients: Clients, config: Config, sessions: dict[str, SessionInfo], now: float,
    older_than: float, dry_run: bool, log: Log,
) -> tuple[list[str], int]:
    """Delete the data of sessions not live and last seen ``older_than`` ago: (ids, objects)."""
    bucket, root = sessions_prefix(config)
    deleted_sessions: list[str] = []
    deleted_objects = 0
    for session in sessions.values():
        last_seen = session.last_seen
        if not last_seen:
            # No session.json yet: a session that is starting uploads its function and batches
            # first, so its newest object says how old it is.
            last_seen = _newest_object(clients, bucket, f"{root}{session.session_id}/")
        if session.live or now - last_seen < older_than:
            continue
        count = _delete_prefix(clients, bucket, f"{root}{session.session_id}/", dry_run)
        log(f"delete session {session.session_id} ({count} objects, last seen "
            f"{_ago(now - last_seen)} ago)")
        deleted_sessions.append(session.session_id)
        deleted_objects += count
    return deleted_sessions, deleted_objects


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
            newest = max(newest, aws_timestamp(item.get("LastModified")) or 0.0)
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
                yield arn, aws_timestamp(described["taskDefinition"].get("registeredAt"))


# -- teardown ----------------------------------------------------------------------------------

Say = Callable[[str], None]


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

    _stop_all_tasks(clients, config.cluster, say, log)
    _teardown_cluster(clients, config.cluster, say)
    _teardown_log_group(clients, config.log_group, say)
    _teardown_security_groups(clients, config.security_groups, security_group, say)
    _teardown_repository(clients, repository, say)
    if config.bucket:
        _teardown_bucket(clients, config.bucket, keep_bucket, say)
    for role in (config.task_role, config.execution_role):
        _teardown_role(clients, role_name(role), say)
    if read_config_file(config_file) is not None:
        path = update_config_file({}, config_file, remove=_SETUP_SETTINGS)
        say(f"removed the settings of setup from {path}" if path.exists() else f"deleted {path}")
    return done


def _stop_all_tasks(clients: Clients, cluster: str, say: Say, log: Log) -> None:
    """Stop the project's running tasks and wait for them; deregister its task definitions."""
    ecs = clients("ecs")
    stopping: list[str] = []
    for task in list_tasks(clients, cluster, ["RUNNING"]):
        ecs.stop_task(cluster=cluster, task=task["taskArn"], reason="starburst teardown")
        stopping.append(str(task["taskArn"]))
        say(f"stopping task {str(task['taskArn']).rsplit('/', 1)[-1]}")
    if stopping:
        # The cluster and the security group cannot go while tasks still hold them.
        log("  waiting for the tasks to stop...")
        waiter = ecs.get_waiter("tasks_stopped")
        for first in range(0, len(stopping), DESCRIBE_MAX):
            try:
                waiter.wait(cluster=cluster, tasks=stopping[first:first + DESCRIBE_MAX],
                            WaiterConfig={"Delay": 6, "MaxAttempts": 50})
            except Exception as exc:
                say(f"tasks did not all stop in time ({exc}); run teardown again later")
    for arn, _ in _managed_task_definitions(clients):
        ecs.deregister_task_definition(taskDefinition=arn)
        say(f"deregistered task definition {arn.rsplit('/', 1)[-1]}")


def _teardown_cluster(clients: Clients, name: str, say: Say) -> None:
    ecs = clients("ecs")
    clusters = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"]
    cluster = next((c for c in clusters if c.get("status") == "ACTIVE"), None)
    if cluster is None:
        say(f"cluster {name}: not found")
    elif is_managed(cluster.get("tags")):
        ecs.delete_cluster(cluster=name)
        say(f"deleted cluster {name}")
    else:
        say(f"kept cluster {name} (not created by starburst setup)")


def _teardown_log_group(clients: Clients, name: str, say: Say) -> None:
    cwl = clients("logs")
    groups = cwl.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == name), None)
    if group is None:
        say(f"log group {name}: not found")
    elif is_managed(cwl.list_tags_log_group(logGroupName=name).get("tags", {})):
        cwl.delete_log_group(logGroupName=name)
        say(f"deleted log group {name}")
    else:
        say(f"kept log group {name} (not created by starburst setup)")


def _teardown_security_groups(clients: Clients, group_ids: tuple[str, ...], name: str,
                              say: Say) -> None:
    ec2 = clients("ec2")
    for group_id in group_ids:
        try:
            sg = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        except Exception as exc:
            if error_code(exc) not in ("InvalidGroup.NotFound", "InvalidGroupId.Malformed"):
                raise
            say(f"security group {group_id}: not found")
            continue
        if not (is_managed(sg.get("Tags")) and sg.get("GroupName") == name):
            say(f"kept security group {group_id} (not created by starburst setup)")
            continue
        try:
            ec2.delete_security_group(GroupId=group_id)
        except Exception as exc:
            if error_code(exc) != "DependencyViolation":
                raise
            say(f"kept security group {group_id} for now: network interfaces of stopped "
                "tasks still use it; run `starburst teardown` again in a few minutes")
            continue
        say(f"deleted security group {group_id}")


def _teardown_repository(clients: Clients, repository: str, say: Say) -> None:
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


def _teardown_role(clients: Clients, name: str, say: Say) -> None:
    iam = clients("iam")
    response = unless_missing("NoSuchEntity", iam.get_role, RoleName=name)
    if response is None:
        say(f"role {name}: not found")
        return
    found = response["Role"]
    tags = found.get("Tags") or iam.list_role_tags(RoleName=name).get("Tags", [])
    if not is_managed(tags):
        say(f"kept role {name} (not created by starburst setup)")
        return
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        for policy in page["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
        for policy_name in page["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    iam.delete_role(RoleName=name)
    say(f"deleted role {name}")
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
