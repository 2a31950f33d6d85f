"""The client SIGKILLed mid-map on the emulated Fargate (issue 11's fault test): its tasks keep
running (nobody is left to stop them), and `starburst cleanup` then stops every one of them and
deletes the session's data, so nothing keeps billing and nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from starburst_executor.config import load_config
from starburst_executor.provision import Clients, cleanup
from starburst_executor.testing import FargateEmulator

from .aws_fixtures import boto, fargate, moto_server  # noqa: F401
from .test_fargate_end_to_end import aws_setup  # noqa: F401

WAIT = 90.0


def _client_script(settings: dict[str, Any], bucket: str) -> str:
    return textwrap.dedent(f"""
        import sys, time
        import boto3, botocore.exceptions
        from starburst_executor import FargateExecutor

        def held(x):
            # Busy until a key that is never written exists: the call outlives the client.
            print("call started", flush=True)
            s3 = boto3.client("s3")
            while True:
                try:
                    s3.head_object(Bucket={bucket!r}, Key="never-written")
                    return x
                except botocore.exceptions.ClientError:
                    time.sleep(0.2)

        ex = FargateExecutor(max_workers=2, **{settings!r})
        futures = [ex.submit(held, x) for x in range(6)]
        print("submitted", flush=True)
        futures[0].result()  # never returns: the test kills this process first
        """)


def _session_objects(fargate: FargateEmulator, bucket: str) -> list[str]:
    s3 = boto("s3", fargate.moto)
    return [str(o["Key"]) for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            if "/sessions/" in f"/{o['Key']}"]


def test_a_killed_client_leaves_tasks_that_cleanup_stops_and_data_it_deletes(
    fargate: FargateEmulator, aws_setup: dict[str, Any], tmp_path: Path
) -> None:
    settings = dict(aws_setup)
    bucket = settings["bucket"]
    script = tmp_path / "client.py"
    script.write_text(_client_script(settings, bucket))
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **fargate.env(), "PYTHONPATH": repo,
           "STARBURST_CONFIG": str(tmp_path / "none.json")}
    client = subprocess.Popen([sys.executable, str(script)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Armed on events: both workers are running a call (their logs say so).
        deadline = time.monotonic() + WAIT
        while sum("call started" in (t.container.output() if t.container else "")
                  for t in fargate.running()) < 2:
            assert client.poll() is None, client.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, f"the calls never started: {fargate.tasks}"
            time.sleep(0.1)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert len(fargate.running()) == 2, "the tasks outlive a killed client: nothing stops them"
    assert _session_objects(fargate, bucket)

    with fargate.patched_environ():
        config = load_config({k: v for k, v in settings.items() if k != "backend"})
        report = cleanup(config, clients=Clients(config.region), older_than=0.0,
                         live_window=0.0, log=lambda line: None)
    assert len(report.stopped_tasks) == 2 and len(report.deleted_sessions) == 1
    assert fargate.wait_stopped(30), f"tasks still running: {fargate.running()}"
    assert _session_objects(fargate, bucket) == []
