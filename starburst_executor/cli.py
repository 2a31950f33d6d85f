"""The ``starburst`` command line: setup, doctor, build, cost, status, logs, cleanup, teardown,
collect and cancel (detached sessions, see ``cli_sessions``).

Exit codes: 0 success, 1 a check or an operation failed, 2 a usage error (bad arguments or
settings), 130 interrupted.  A user's error prints one line saying what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import cli_sessions
from .config import Config, load_config, parse_memory
from .errors import ConfigError, StarburstError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _memory(text: str) -> int:
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _duration(text: str) -> float:
    from .provision import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``starburst`` (exposed for documentation and tests)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", help="AWS region (default: config file, then AWS_REGION)")
    common.add_argument("--profile", help="AWS profile of ~/.aws/config to use")
    common.add_argument("--config", type=Path, metavar="PATH",
                        help="config file (default: $STARBURST_CONFIG or "
                             "~/.config/starburst/config.json)")

    parser = argparse.ArgumentParser(
        prog="starburst",
        description="Run Python callables on AWS ECS Fargate: set up, check and clean up.",
        epilog="First time: `starburst setup`, `starburst doctor`, `starburst build`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("setup", parents=[common], help="create the AWS resources and config file",
                       description="Create (or bring up to date) the IAM roles, S3 bucket, ECR "
                       "repository, ECS cluster, log group and security group, and write the "
                       "config file. Safe to run again: it changes only what differs.")
    p.add_argument("--bucket", help="S3 bucket (default starburst-<account>-<region>)")
    p.add_argument("--prefix", help="key prefix in the bucket (default starburst)")
    p.add_argument("--session-days", type=_positive(int), default=7, metavar="N",
                   help="delete session data after N days (default 7)")
    p.add_argument("--keep-images", type=_positive(int), default=10, metavar="N",
                   help="keep the last N worker images (default 10)")
    p.add_argument("--log-retention-days", type=_positive(int), default=30, metavar="N",
                   help="keep worker logs N days (default 30)")
    p.add_argument("--vpc", help="VPC of the security group (default: the default VPC)")
    p.add_argument("--subnets", help="comma-separated subnet ids (default: the VPC's default "
                   "subnets)")
    p.add_argument("--kms-key-id", help="KMS key of the session data (the task role may use it)")
    p.add_argument("--adopt", action="store_true",
                   help="take over existing resources of setup's names that lack its tag "
                   "starburst:managed=true (otherwise setup stops at them)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, every policy document and the policy a user needs to "
                   "run work; change nothing")

    p = sub.add_parser("doctor", parents=[common], help="check that a run can work",
                       description="Check credentials, region, roles, bucket, cluster, network, "
                       "Fargate quota, worker image and Docker; print the fix for each failure.")
    p.add_argument("--workers", type=_positive(int), help="workers to plan for (quota check)")
    p.add_argument("--cpu", type=_positive(float), help="vCPUs per worker (quota check)")
    p.add_argument("--no-docker", action="store_true", help="skip the local Docker check")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")

    p = sub.add_parser("build", parents=[common], help="build and push the worker image",
                       description="Build the worker image of this Python environment (if ECR "
                       "does not have it yet), push it, and record it in the config file.")
    p.add_argument("--force", action="store_true", help="build and push even if ECR has it")
    p.add_argument("--arm", action="store_true", help="build for arm64 (Graviton)")
    p.add_argument("--base-image", metavar="IMAGE",
                   help="image to build over (default: the public Python slim image of this "
                        "Python's minor version); its Python minor must be this one's")
    p.add_argument("--requirement", action="append", default=[], metavar="REQ",
                   help="an extra pip requirement, pinned (e.g. requests==2.32.3), or a "
                        "requirements file of them; repeatable")
    p.add_argument("--apt", action="append", default=[], metavar="PKG",
                   help="Debian package(s) to install, comma-separated; repeatable (the build "
                        "then uses the network)")
    p.add_argument("--dockerfile", type=Path, metavar="PATH",
                   help="a Dockerfile of your own, built first and used as the base image")
    p.add_argument("--allow-index", action="store_true",
                   help="install packages with no wheel for the target from the package index "
                        "during the build, instead of failing")

    _add_cost_parser(sub, common)
    _add_session_parsers(sub, common)
    cli_sessions.add_parsers(sub, common)
    return parser


def _add_cost_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``cost`` command."""
    p = sub.add_parser("cost", parents=[common], help="estimate what a run costs",
                       description="Estimate the Fargate cost of WORKERS tasks running HOURS "
                       "each, from the AWS Pricing API or, when unreachable, the offline table.")
    p.add_argument("--workers", type=_positive(int), default=10, help="tasks (default 10)")
    p.add_argument("--cpu", type=_positive(float), default=4.0, help="vCPUs per task (default 4)")
    p.add_argument("--memory", type=_memory, default=8192, help="memory per task, e.g. 8GB "
                   "(default 8GB)")
    p.add_argument("--hours", type=_positive(float), default=1.0, help="hours each (default 1)")
    p.add_argument("--storage", type=_positive(int), default=20, metavar="GIB",
                   help="ephemeral storage per task, GiB (default 20, included)")
    p.add_argument("--spot", action="store_true", help="Fargate Spot prices")
    p.add_argument("--arm", action="store_true", help="ARM (Graviton) prices")
    p.add_argument("--offline", action="store_true", help="use the offline price table only")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")


def _add_session_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """The commands about sessions and what they left: status, logs, cleanup, teardown."""
    p = sub.add_parser("status", parents=[common], help="sessions, running tasks and their cost",
                       description="List sessions with their age, whether they are live, their "
                       "tasks and the cost so far.")
    p.add_argument("--json", action="store_true", help="print the status as JSON")

    p = sub.add_parser("logs", parents=[common], help="print the logs of a session's workers",
                       description="Print the CloudWatch log lines of a session's tasks.")
    p.add_argument("session", help="session id (see `starburst status`)")
    p.add_argument("--task", help="only this task (id or ARN)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new lines until the tasks stop")

    p = sub.add_parser("cleanup", parents=[common], help="stop orphaned tasks, delete old data",
                       description="Stop tasks of sessions that are no longer live, delete "
                       "session data older than --older-than, deregister stale task definitions.")
    p.add_argument("--older-than", type=_duration, default=7 * 86400.0, metavar="AGE",
                   help="age of session data and task definitions to remove, e.g. 12h, 7d "
                        "(default 7d)")
    p.add_argument("--live-window", type=_duration, default=300.0, metavar="AGE",
                   help="a session with a heartbeat newer than this is live (default 5m)")
    p.add_argument("--dry-run", action="store_true", help="say what would be done; do nothing")

    p = sub.add_parser("teardown", parents=[common], help="delete everything setup created",
                       description="Delete the resources starburst setup created (only those "
                       "it tagged), after confirmation.")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--keep-bucket", action="store_true", help="keep the bucket and its data")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``starburst`` command line; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) and usage errors (2)
        return int(exit_.code) if isinstance(exit_.code, int) else EXIT_USAGE
    handler = _COMMANDS[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except StarburstError as exc:
        _err(str(exc))
        return EXIT_FAILED
    except Exception as exc:
        from . import _aws

        if not _aws.is_aws_error(exc):
            raise
        _err(_aws.message(exc))
        return EXIT_FAILED


def _err(message: str, stream: TextIO | None = None) -> None:
    print(f"starburst: error: {message}", file=stream or sys.stderr)


# -- commands ----------------------------------------------------------------------------------

def _config(args: argparse.Namespace, **overrides: Any) -> Config:
    values = {"region": getattr(args, "region", None), **overrides}
    return load_config(values, path=args.config)


def _clients(args: argparse.Namespace, region: str | None) -> Any:
    from .provision import Clients

    return Clients(region, profile=args.profile)


def _cmd_setup(args: argparse.Namespace) -> int:
    from .provision import SetupOptions, setup

    subnets = [s.strip() for s in args.subnets.split(",") if s.strip()] if args.subnets else None
    options = SetupOptions(
        region=args.region, bucket=args.bucket, prefix=args.prefix,
        session_days=args.session_days, keep_images=args.keep_images,
        log_retention_days=args.log_retention_days, vpc=args.vpc, subnets=subnets,
        kms_key_id=args.kms_key_id, adopt=args.adopt, config_file=args.config,
    )
    result = setup(options, clients=_clients(args, args.region), dry_run=args.dry_run,
                   log=_say)
    if args.dry_run:
        print("\nPolicy documents and settings:")
        for step in result.steps:
            for name, document in step.documents.items():
                print(f"\n# {step.step} {step.resource}: {name}")
                print(json.dumps(document, indent=2, sort_keys=True))
        print("\n# the least-privilege policy of a user who runs work once setup is done")
        print(json.dumps(result.user_policy, indent=2))
    return EXIT_OK


def _say(line: str) -> None:
    print(line, flush=True)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .provision import doctor

    overrides: dict[str, Any] = {}
    if args.cpu:
        overrides["cpu"] = args.cpu
    config = _config(args, **overrides)
    log = None if args.json else _say
    if log:
        print("Checking what a Fargate run needs:", flush=True)
    report = doctor(config, clients=_clients(args, config.region), workers=args.workers,
                    check_docker=not args.no_docker, log=log)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        failed = sum(c.status == "fail" for c in report.checks)
        warned = sum(c.status == "warn" for c in report.checks)
        print("All checks passed." if report.ok and not warned else
              f"{failed} failed, {warned} warning(s).")
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_build(args: argparse.Namespace) -> int:
    from . import image
    from .config import config_path, read_config_file, update_config_file

    overrides: dict[str, Any] = {}
    if args.arm:
        overrides["architecture"] = "arm64"
    config = _config(args, **overrides)
    print("Building the worker image (this can take minutes the first time)...", flush=True)
    uri = image.ensure_image(config, log=_say, **_build_options(args))
    path = args.config or config_path()
    current = read_config_file(path) or {}
    # The image only runs on its own architecture, so the two are recorded together.
    wanted = {"image": uri, "architecture": config.architecture}
    if any(current.get(k) != v for k, v in wanted.items()):
        update_config_file(wanted, path)
        print(f"Image {uri} ({config.architecture}) recorded in {path}.")
    else:
        print(f"Image {uri} is up to date.")
    return EXIT_OK


def _build_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``ensure_image`` that the ``build`` flags set (only those given)."""
    options: dict[str, Any] = {}
    if args.force:
        options["force"] = True
    if args.base_image:
        options["base_image"] = args.base_image
    requirements = [r for text in args.requirement for r in _requirements(text)]
    if requirements:
        options["requirements"] = requirements
    apt = [name.strip() for text in args.apt for name in text.split(",") if name.strip()]
    if apt:
        options["apt_packages"] = apt
    if args.dockerfile is not None:
        options["dockerfile"] = args.dockerfile
    if args.allow_index:
        options["allow_index"] = True
    return options


def _requirements(text: str) -> list[str]:
    """``--requirement``'s value: a requirement, or the requirements of the file it names."""
    path = Path(text)
    if not path.is_file():
        return [text.strip()]
    found = []
    for line in path.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise ConfigError(f"{path}: pip options ({line!r}) are not supported in "
                              "--requirement files: list requirements only")
        found.append(line)
    return found


def _cmd_cost(args: argparse.Namespace) -> int:
    from . import cost

    region = args.region
    if region is None:
        try:
            region = load_config(path=args.config).region
        except ConfigError:
            region = None
    if region is None:
        from ._aws import default_region

        try:
            region = default_region(args.profile)
        except Exception:
            region = None
    prices = cost.OFFLINE_PRICES
    if not args.offline and region:
        from .provision import fetch_prices

        prices = fetch_prices(region, timeout=3.0)
    estimate = cost.estimate(
        args.workers, args.cpu, args.memory, args.hours, spot=args.spot,
        architecture="arm64" if args.arm else "x86_64", region=region,
        ephemeral_storage_gib=args.storage, prices=prices)
    if args.json:
        data = estimate.as_dict()
        data.update(workers=args.workers, cpu=args.cpu, memory_mib=args.memory, hours=args.hours)
        print(json.dumps(data, indent=2))
        return EXIT_OK
    kind = ("Spot" if args.spot else "on-demand") + (" ARM" if args.arm else " x86")
    print(f"{args.workers} tasks x {args.cpu:g} vCPU x {args.memory / 1024:g} GB x "
          f"{args.hours:g} h, {kind}, {region or 'default region'}:")
    print(f"  vCPU     ${estimate.vcpu:,.4f}  ({estimate.rates.vcpu_hour:g} $/vCPU-hour)")
    print(f"  memory   ${estimate.memory:,.4f}  ({estimate.rates.gb_hour:g} $/GB-hour)")
    if estimate.storage:
        print(f"  storage  ${estimate.storage:,.4f}  ({estimate.storage_gb_hour:g} $/GB-hour "
              "above 20 GB)")
    print(f"  total    ${estimate.total:,.2f}  (${estimate.per_hour:,.2f} per hour)")
    print(f"  prices: {estimate.source}; billed per second, one-minute minimum per task")
    return EXIT_OK


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _cmd_status(args: argparse.Namespace) -> int:
    from .provision import status

    if cli_sessions.print_detached(args.json) and not args.json:
        print()
    config = _config(args)
    report = status(config, clients=_clients(args, config.region))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
        return EXIT_OK
    if not report.sessions and not report.other_tasks:
        print("No sessions.")
        return EXIT_OK
    print(f"{'SESSION':<34} {'BACKEND':<8} {'AGE':>8} {'STATE':<6} {'TASKS':>5} {'COST':>9}")
    for s in report.sessions:
        running = sum(t.status != "STOPPED" for t in s.tasks)
        print(f"{s.session_id:<34} {s.backend:<8} {_age(s.age):>8} "
              f"{'live' if s.live else 'idle':<6} {running:>5} ${s.cost:>8.4f}")
        for t in s.tasks:
            print(f"    task {t.task_id[:12]} {t.status:<9} {t.cpu:g} vCPU {t.memory / 1024:g} GB"
                  f"{' spot' if t.spot else ''}  {_age(t.age)}  ${t.cost:.4f}")
    if report.other_tasks:
        print("Tasks of unknown sessions (see `starburst cleanup`):")
        for t in report.other_tasks:
            print(f"    task {t.task_id[:12]} session {t.session_id or '?'} {t.status} "
                  f"{_age(t.age)} ${t.cost:.4f}")
    if report.not_stopped:
        print(f"{len(report.not_stopped)} task(s) still running with no live client to stop "
              f"them ({', '.join(t.task_id[:12] for t in report.not_stopped)}): they bill until "
              "they exit; stop them with `starburst cleanup`.")
    print("Cost so far counts the tasks ECS still reports (running, or stopped within an hour).")
    return EXIT_OK


def _cmd_logs(args: argparse.Namespace) -> int:
    from .provision import logs

    config = _config(args)
    count = logs(config, args.session, clients=_clients(args, config.region), task=args.task,
                 follow=args.follow, write=_say)
    if count == 0:
        print(f"No log lines for session {args.session} (tasks stopped over an hour ago are "
              "not listed by ECS: pass --task TASK_ID).", file=sys.stderr)
    return EXIT_OK


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from .provision import cleanup

    config = _config(args)
    print("Cleaning up" + (" (dry run)" if args.dry_run else "") + ":", flush=True)
    report = cleanup(config, clients=_clients(args, config.region), older_than=args.older_than,
                     live_window=args.live_window, dry_run=args.dry_run, log=_say)
    would = "would be " if args.dry_run else ""
    print(f"{len(report.stopped_tasks)} task(s) {would}stopped, "
          f"{len(report.kept_tasks)} of live sessions left running, "
          f"{len(report.deleted_sessions)} session(s) {would}deleted, "
          f"{len(report.deregistered)} task definition(s) {would}deregistered.")
    return EXIT_OK


def _cmd_teardown(args: argparse.Namespace) -> int:
    from .provision import role_name, teardown

    config = _config(args)
    bucket = "" if args.keep_bucket else f"the bucket {config.bucket} and all its data, "
    what = (f"the cluster {config.cluster}, the log group {config.log_group}, the security "
            f"group, the image repository, {bucket}and the roles "
            f"{role_name(config.execution_role)} and {role_name(config.task_role)}")
    if not args.yes:
        if not sys.stdin.isatty():
            _err("teardown deletes resources and data: confirm with --yes when not interactive")
            return EXIT_USAGE
        print(f"This deletes {what} (only what starburst setup created).")
        answer = input("Type 'delete' to go on: ").strip()
        if answer != "delete":
            print("Nothing deleted.")
            return EXIT_FAILED
    print("Tearing down:", flush=True)
    teardown(config, clients=_clients(args, config.region), keep_bucket=args.keep_bucket,
             config_file=args.config, log=_say)
    print("Done.")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "setup": _cmd_setup,
    "doctor": _cmd_doctor,
    "build": _cmd_build,
    "cost": _cmd_cost,
    "status": _cmd_status,
    "logs": _cmd_logs,
    "cleanup": _cmd_cleanup,
    "teardown": _cmd_teardown,
    "collect": cli_sessions.cmd_collect,
    "cancel": cli_sessions.cmd_cancel,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
