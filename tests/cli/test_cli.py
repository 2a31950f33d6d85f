"""The ``starburst`` command line against a moto server: exit codes, --json, doctor, cleanup."""

from __future__ import annotations

import datetime
import json
import time

import boto3
import pytest

from starburst_executor import cli
from starburst_executor.config import load_config
from starburst_executor.provision import Clients, cleanup, doctor, logs, status

from ..provision.fixtures import account_bucket



def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_usage_errors(capsys):
    assert run(capsys, "--help")[0] == 0
    for command in ("setup", "doctor", "build", "cost", "status", "logs", "cleanup", "teardown"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "usage: starburst " + command in out
    assert run(capsys)[0] == 2
    assert run(capsys, "bogus")[0] == 2
    code, _, err = run(capsys, "cost", "--workers", "-3")
    assert code == 2 and "must be positive" in err
    code, _, err = run(capsys, "cleanup", "--older-than", "soon")
    assert code == 2 and "cannot read duration" in err


def test_cost_json_matches_the_table(capsys):
    code, out, _ = run(capsys, "cost", "--workers", "50", "--cpu", "4", "--memory", "8GB",
                       "--hours", "1", "--region", "us-east-1", "--offline", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total"] == pytest.approx(9.874)
    code, out, _ = run(capsys, "cost", "--workers", "50", "--cpu", "4", "--memory", "8GB",
                       "--region", "us-east-1", "--offline", "--spot", "--arm")
    assert code == 0 and "Spot ARM" in out and "offline table, 2026-03-01" in out


def test_commands_before_setup_say_what_to_do(aws, capsys):
    code, _, err = run(capsys, "status")
    assert code == 2 and "starburst setup" in err and "Traceback" not in err
    code, _, err = run(capsys, "status", "--region", "us-east-1")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_cost_falls_back_to_the_table_under_moto(aws, capsys):
    code, out, _ = run(capsys, "cost", "--region", "us-east-1", "--json")
    # The in-process moto server itself prints a line about the missing Pricing backend.
    assert code == 0 and json.loads(out[out.index("{"):])["source"].startswith("offline table (")


def test_missing_credentials_is_one_line_not_a_traceback(aws, monkeypatch, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, out, err = run(capsys, "setup", "--region", "us-east-1", "--dry-run")
    assert code in (1, 2)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "aws configure" in err


def test_an_aws_refusal_is_one_line(aws, capsys, mocker):
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "AccessDenied", "Message": "User: u is not authorized "
                                   "to perform: iam:CreateRole"}}, "CreateRole")
    mocker.patch("starburst_executor.provision.setup", side_effect=error)
    code, _, err = run(capsys, "setup", "--region", "us-east-1")
    assert code == 1 and err.count("\n") == 1
    assert "AWS denied CreateRole: User: u is not authorized to perform: iam:CreateRole" in err


def test_setup_cli_twice_then_dry_run(aws, capsys):
    code, out, _ = run(capsys, "setup", "--region", "us-east-1")
    assert code == 0 and "[created]" in out
    code, out, _ = run(capsys, "setup")
    assert code == 0 and "Nothing to change: everything is already set up." in out
    code, out, _ = run(capsys, "setup", "--dry-run")
    assert code == 0 and "s3:GetObject" in out and "aws:SecureTransport" in out


def test_doctor_names_a_deleted_role_and_its_fix(aws, capsys):
    assert run(capsys, "setup", "--region", "us-east-1")[0] == 0
    iam = boto3.client("iam")
    for policy in iam.list_attached_role_policies(RoleName="starburstECSExecutionRole")[
            "AttachedPolicies"]:
        iam.detach_role_policy(RoleName="starburstECSExecutionRole", PolicyArn=policy["PolicyArn"])
    iam.delete_role(RoleName="starburstECSExecutionRole")
    code, out, _ = run(capsys, "doctor", "--json", "--no-docker")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    role = next(c for c in report["checks"] if c["name"] == "execution role")
    assert role["status"] == "fail"
    assert "starburstECSExecutionRole does not exist" in role["detail"]
    assert "starburst setup" in role["fix"]
    assert next(c for c in report["checks"] if c["name"] == "task role")["status"] == "ok"
    code, out, _ = run(capsys, "doctor", "--no-docker")
    assert code == 1 and "[FAIL] execution role" in out and "fix: run `starburst setup`" in out


def test_doctor_checks_network_quota_and_image(aws, capsys):
    assert run(capsys, "setup", "--region", "us-east-1")[0] == 0
    config = load_config()
    clients = Clients("us-east-1")
    report = doctor(config.replace(cpu=4), clients=clients, workers=50, check_docker=False,
                    quota_reader=lambda region, spot: 64.0)
    checks = {c.name: c for c in report.checks}
    assert checks["credentials"].status == "ok"
    assert checks["cluster"].status == "ok" and checks["bucket"].status == "ok"
    # moto's default VPC has no route to the internet: the subnets fail, with the fix.
    subnet = [c for c in report.checks if c.name.startswith("subnet")]
    assert len(subnet) == 1 and subnet[0].status == "fail" and "NAT" in subnet[0].fix
    assert all(s in subnet[0].name for s in config.subnets)
    quota = checks["Fargate vCPU quota"]
    assert quota.status == "warn" and "200 vCPUs > quota 64: runs in waves of 16" in quota.detail
    assert "request-service-quota-increase" in quota.fix and "L-3032A538" in quota.fix
    assert checks["worker image"].status == "fail" and "starburst build" in checks[
        "worker image"].fix

    ec2 = boto3.client("ec2")
    vpc = ec2.describe_subnets(SubnetIds=[config.subnets[0]])["Subnets"][0]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    table = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    report = doctor(config, clients=clients, workers=4, check_docker=False,
                    quota_reader=lambda region, spot: 64.0)
    checks = {c.name: c for c in report.checks}
    subnet = [c for c in report.checks if c.name.startswith("subnet")]
    assert [c.status for c in subnet] == ["ok"] and "internet gateway" in subnet[0].detail
    assert checks["Fargate vCPU quota"].status == "ok"

    # An image that ECR has passes; one it lacks names `starburst build`.
    ecr = boto3.client("ecr")
    repo = ecr.describe_repositories(repositoryNames=["starburst-worker"])["repositories"][0]
    manifest = json.dumps({"schemaVersion": 2, "mediaType":
                           "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": "sha256:" + "1" * 64, "size": 1,
                                      "mediaType": "application/vnd.docker.container.image.v1+json"},
                           "layers": []})
    ecr.put_image(repositoryName="starburst-worker", imageManifest=manifest, imageTag="py3.11-abc")
    found = doctor(config.replace(image=f"{repo['repositoryUri']}:py3.11-abc"), clients=clients,
                   check_docker=False, quota_reader=lambda region, spot: 64.0)
    assert {c.name: c for c in found.checks}["worker image"].status == "ok"
    missing = doctor(config.replace(image=f"{repo['repositoryUri']}:py3.11-other"),
                     clients=clients, check_docker=False, quota_reader=lambda region, spot: 64.0)
    image = {c.name: c for c in missing.checks}["worker image"]
    assert image.status == "fail" and image.fix == "run `starburst build`"


def _started_ten_minutes_ago(now: float):
    """moto's tasks carry no timestamps: give each described task a start time."""

    def hook(parsed, **_):
        for task in parsed.get("tasks", []):
            task.setdefault("startedAt", datetime.datetime.fromtimestamp(now - 600,
                                                                         datetime.timezone.utc))

    return hook


def _setup_for_objects(capsys) -> None:
    """Run setup, then drop the TLS-only bucket policy: moto enforces it, and its endpoint on
    loopback is plain HTTP, so every object request would be refused."""
    assert run(capsys, "setup", "--region", "us-east-1")[0] == 0
    boto3.client("s3").delete_bucket_policy(Bucket=account_bucket())


def _run_task(session_id: str, cluster: str = "starburst") -> str:
    ecs = boto3.client("ecs")
    existing = ecs.list_task_definitions(familyPrefix="starburst-test")["taskDefinitionArns"]
    arn = existing[0] if existing else ecs.register_task_definition(
        family="starburst-test", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
        cpu="1024", memory="2048",
        containerDefinitions=[{"name": "worker", "image": "x", "memory": 2048}],
        tags=[{"key": "starburst:managed", "value": "true"}],
    )["taskDefinition"]["taskDefinitionArn"]
    config = load_config()
    task = ecs.run_task(
        cluster=cluster, taskDefinition=arn, launchType="FARGATE", count=1,
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": list(config.subnets), "securityGroups": list(config.security_groups)}},
        tags=[{"key": "starburst:managed", "value": "true"},
              {"key": "starburst:session", "value": session_id}],
    )["tasks"][0]
    return str(task["taskArn"]).rsplit("/", 1)[-1]


def _session(session_id: str, created: float, heartbeat: float | None) -> None:
    doc = {"session_id": session_id, "created": created, "backend": "fargate"}
    if heartbeat is not None:
        doc["heartbeat"] = heartbeat
    boto3.client("s3").put_object(Bucket=account_bucket(), Key=f"starburst/sessions/{session_id}/session.json",
                                  Body=json.dumps(doc).encode())
    boto3.client("s3").put_object(Bucket=account_bucket(), Key=f"starburst/sessions/{session_id}/batches/b1",
                                  Body=b"x")


def test_cleanup_stops_orphans_and_leaves_live_sessions(aws, capsys):
    _setup_for_objects(capsys)
    now = time.time() + 600  # tasks started 10 minutes "ago": past the start grace period
    _session("live", now - 3600, now - 30)
    _session("dead", now - 10 * 86400, now - 9 * 86400)
    _session("quiet", now - 3600, None)  # no heartbeat: its creation time counts
    # A session still starting: batches uploaded, no session.json yet.
    boto3.client("s3").put_object(Bucket=account_bucket(),
                                  Key="starburst/sessions/starting/batches/b1", Body=b"x")
    ecs = boto3.client("ecs")
    stale = ecs.register_task_definition(
        family="starburst-old", containerDefinitions=[{"name": "w", "image": "x", "memory": 512}],
        tags=[{"key": "starburst:managed", "value": "true"}])["taskDefinition"]["taskDefinitionArn"]
    live_task = _run_task("live")
    dead_task = _run_task("dead")
    quiet_task = _run_task("quiet")
    config = load_config()
    session = boto3.session.Session(region_name="us-east-1")
    session.events.register("after-call.ecs.DescribeTasks", _started_ten_minutes_ago(now))
    clients = Clients("us-east-1", session=session)

    report = status(config, clients=clients, now=now)
    by_id = {s.session_id: s for s in report.sessions}
    assert by_id["live"].live and not by_id["dead"].live and not by_id["quiet"].live
    assert [t.task_id for t in by_id["live"].tasks] == [live_task]
    live = by_id["live"].tasks[0]
    assert live.age == pytest.approx(600, abs=0.01) and live.cpu == 1 and live.memory == 2048
    assert live.cost == pytest.approx((0.04048 + 2 * 0.004445) * 600 / 3600)

    dry = cleanup(config, clients=clients, now=now, dry_run=True, log=lambda _: None)
    assert sorted(dry.stopped_tasks) == sorted([dead_task, quiet_task])
    arns = ecs.list_tasks(cluster="starburst", desiredStatus="RUNNING")["taskArns"]
    assert len(arns) == 3
    assert dry.deregistered == (stale,)

    done = cleanup(config, clients=clients, now=now, log=lambda _: None)
    assert sorted(done.stopped_tasks) == sorted([dead_task, quiet_task])
    assert done.kept_tasks == (live_task,)
    assert done.deleted_sessions == ("dead",) and done.deleted_objects == 2
    later = cleanup(config, clients=clients, now=now + 8 * 86400, dry_run=True,
                    log=lambda _: None)
    assert "starting" in later.deleted_sessions
    # The definition the live task uses stays; the unused one goes.
    assert done.deregistered == (stale,)
    assert ecs.describe_task_definition(taskDefinition=stale)["taskDefinition"]["status"] == (
        "INACTIVE")
    tasks = ecs.describe_tasks(cluster="starburst", tasks=arns)["tasks"]
    desired = {str(t["taskArn"]).rsplit("/", 1)[-1]: t["desiredStatus"] for t in tasks}
    assert desired[live_task] == "RUNNING"
    assert desired[dead_task] == "STOPPED" and desired[quiet_task] == "STOPPED"
    keys = boto3.client("s3").list_objects_v2(Bucket=account_bucket(), Prefix="starburst/sessions/dead/")
    assert keys["KeyCount"] == 0


def test_status_json_and_logs(aws, capsys):
    _setup_for_objects(capsys)
    now = time.time()
    _session("s1", now - 60, now - 5)
    task = _run_task("s1")
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["sessions"][0]["session_id"] == "s1" and data["sessions"][0]["live"]
    assert data["sessions"][0]["tasks"][0]["task_id"] == task
    cwl = boto3.client("logs")
    stream = f"starburst/worker/{task}"
    cwl.create_log_stream(logGroupName="/starburst/workers", logStreamName=stream)
    cwl.put_log_events(logGroupName="/starburst/workers", logStreamName=stream, logEvents=[
        {"timestamp": int(now * 1000), "message": "hello from the worker"}])
    code, out, _ = run(capsys, "logs", "s1")
    assert code == 0 and "hello from the worker" in out and task[:12] in out

    # --follow polls for new lines while the session's tasks run.
    lines: list[str] = []

    def more(_: float) -> None:
        cwl.put_log_events(logGroupName="/starburst/workers", logStreamName=stream, logEvents=[
            {"timestamp": int(now * 1000) + 1000, "message": "second line"}])

    written = logs(load_config(), "s1", clients=Clients("us-east-1"), follow=True,
                   write=lines.append, sleep=more, max_polls=2)
    assert written == 2 and lines[1].endswith("second line")


def test_build_records_the_image(aws, capsys, mocker):
    ensure = mocker.patch("starburst_executor.image.ensure_image",
                          return_value="1.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:py3.11-x")
    code, out, _ = run(capsys, "build", "--region", "us-east-1")
    assert code == 0 and ensure.call_count == 1
    assert load_config().image == "1.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:py3.11-x"
    assert "up to date" in run(capsys, "build", "--region", "us-east-1")[1]
    assert run(capsys, "build", "--region", "us-east-1", "--arm")[0] == 0
    assert ensure.call_args.args[0].architecture == "arm64"
    assert load_config().architecture == "arm64"


def test_build_flags_reach_ensure_image(aws, capsys, mocker, tmp_path):
    ensure = mocker.patch("starburst_executor.image.ensure_image",
                          return_value="1.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:py3.11-y")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\n")
    extra = tmp_path / "extra.txt"
    extra.write_text("# tools\nrich==13.7.1  # pinned\n\nclick==8.1.7\n")
    code, _, err = run(capsys, "build", "--region", "us-east-1", "--base-image", "my/base:3.11",
                       "--requirement", "requests==2.32.3", "--requirement", str(extra),
                       "--apt", "libgomp1,curl", "--apt", "git", "--dockerfile", str(dockerfile),
                       "--allow-index", "--force")
    assert code == 0, err
    assert ensure.call_args.kwargs == {
        "log": cli._say, "force": True, "base_image": "my/base:3.11",
        "requirements": ["requests==2.32.3", "rich==13.7.1", "click==8.1.7"],
        "apt_packages": ["libgomp1", "curl", "git"], "dockerfile": dockerfile,
        "allow_index": True,
    }
    # No flag, no option: ensure_image's own defaults apply.
    assert run(capsys, "build", "--region", "us-east-1")[0] == 0
    assert ensure.call_args.kwargs == {"log": cli._say}

    extra.write_text("-i https://elsewhere/simple\nrich==13.7.1\n")
    code, _, err = run(capsys, "build", "--region", "us-east-1", "--requirement", str(extra))
    assert code == 2 and "list requirements only" in err


def test_build_help_names_the_image_options(capsys):
    code, out, _ = run(capsys, "build", "--help")
    assert code == 0
    for flag in ("--base-image", "--requirement", "--apt", "--dockerfile", "--allow-index"):
        assert flag in out


def test_teardown_needs_confirmation_then_removes_what_setup_created(aws, capsys, monkeypatch):
    _setup_for_objects(capsys)
    _session("old", time.time() - 60, None)
    task = _run_task("old")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, _, err = run(capsys, "teardown")
    assert code == 2 and "--yes" in err
    assert boto3.client("iam").get_role(RoleName="starburstECSTaskRole")
    code, out, _ = run(capsys, "teardown", "--yes")
    assert code == 0, out
    assert boto3.client("iam").list_roles()["Roles"] == []
    assert "deleted bucket" in out and "deleted cluster starburst" in out
    assert f"stopping task {task}" in out and "deregistered task definition starburst-test:1" in out
    names = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert account_bucket() not in names


def test_cleanup_acts_on_the_folder_it_listed_never_on_an_id_inside_it(aws, capsys):
    _setup_for_objects(capsys)
    now = time.time()
    _session("live", now - 3600, now - 30)
    # An abandoned folder whose session.json was forged to name the live session.
    bucket = account_bucket()
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="starburst/sessions/abandoned/session.json",
                  Body=json.dumps({"session_id": "live", "created": now - 10 * 86400,
                                   "heartbeat": now - 9 * 86400}).encode())
    s3.put_object(Bucket=bucket, Key="starburst/sessions/abandoned/batches/b1", Body=b"x")
    # Another whose session.json is garbage, or claims a heartbeat from the future.
    s3.put_object(Bucket=bucket, Key="starburst/sessions/garbled/session.json",
                  Body=json.dumps({"session_id": "live", "created": "soon"}).encode())
    s3.put_object(Bucket=bucket, Key="starburst/sessions/forever/session.json",
                  Body=json.dumps({"created": now, "heartbeat": now + 10 * 365 * 86400}).encode())
    config = load_config()
    report = status(config, now=now)
    assert sorted(s.session_id for s in report.sessions) == [
        "abandoned", "forever", "garbled", "live"]
    done = cleanup(config, now=now + 3600, log=lambda _: None)
    assert done.deleted_sessions == ("abandoned",)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="starburst/sessions/")
    keys = {o["Key"] for o in listed.get("Contents", [])}
    assert "starburst/sessions/live/session.json" in keys
    assert "starburst/sessions/live/batches/b1" in keys
    assert not any(k.startswith("starburst/sessions/abandoned/") for k in keys)
    later = cleanup(config, now=now + 30 * 86400, log=lambda _: None)
    assert set(later.deleted_sessions) == {"live", "garbled", "forever"}
