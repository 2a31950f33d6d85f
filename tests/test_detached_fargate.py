"""Detached sessions on the emulated Fargate: a killed client, attach from a new process,
workers that exit once the queue is drained, max_cost and cancel() stopping every task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from starburst_executor import FargateExecutor, SessionStopped, attach, detached
from starburst_executor.testing import FargateEmulator

from .aws_fixtures import REGION, fargate, make_bucket, make_cluster, moto_server  # noqa: F401
from .test_detached import collect_in_new_process, held, run_and_kill_client, wait_until


@pytest.fixture
def aws_setup(fargate: FargateEmulator) -> dict[str, Any]:  # noqa: F811
    return dict(backend="fargate", region=REGION, bucket=make_bucket(fargate.moto),
                cluster=make_cluster(fargate.moto), image="example/worker:1", cpu=0.25,
                memory=512)


def test_killed_client_then_attach_on_fargate(fargate: FargateEmulator,  # noqa: F811
                                              aws_setup: dict[str, Any], tmp_path: Path) -> None:
    settings = {k: v for k, v in aws_setup.items() if k != "backend"}
    session_id = run_and_kill_client(tmp_path, "fargate", settings)
    assert collect_in_new_process(session_id) == [x * 3 + 1 for x in range(2000)]
    # The workers exit once the queue is drained: no task left running.
    wait_until(lambda: not fargate.running(), what="the tasks to exit")
    session = attach(session_id)
    assert session.status().done == 2000
    session.cleanup()


def test_max_cost_and_cancel_stop_every_task(fargate: FargateEmulator,  # noqa: F811
                                             aws_setup: dict[str, Any], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker costs $1 a second, billed by the second (the real minimum is a minute).
    monkeypatch.setattr(detached, "worker_price", lambda config: (3600.0, 0.0))
    ex = FargateExecutor(**aws_setup, max_workers=2, detached=True, max_cost=2,
                         idle_timeout=30, lease_timeout=1)
    futures = ex.map(held, [str(tmp_path / "never")] * 6, range(6), chunksize=1)
    session = attach(ex.session_id)
    try:
        wait_until(lambda: "max_cost" in str(session.status().halted), what="the limit")
        wait_until(lambda: not fargate.running(), what="the tasks to stop")
        with pytest.raises(SessionStopped, match="max_cost"):
            list(futures)
    finally:
        ex.shutdown(wait=False)
        session.cleanup()


def test_cancel_stops_every_task(fargate: FargateEmulator,  # noqa: F811
                                 aws_setup: dict[str, Any], tmp_path: Path) -> None:
    ex = FargateExecutor(**aws_setup, max_workers=2, detached=True, max_cost=5,
                         idle_timeout=30, lease_timeout=30)
    futures = [ex.submit(held, str(tmp_path / "never"), x) for x in range(4)]
    session = attach(ex.session_id)
    try:
        wait_until(lambda: session.status().running > 0, what="a call to start")
        session.cancel()
        wait_until(lambda: not fargate.running(), what="the tasks to stop")
        for future in futures:
            assert isinstance(future.exception(timeout=90), SessionStopped)
    finally:
        ex.shutdown(wait=False)
        session.cleanup()
