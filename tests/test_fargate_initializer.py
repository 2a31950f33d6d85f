"""``initializer`` and ``max_tasks_per_child`` on the emulated Fargate: the initializer travels
by its key, runs in each task before its calls with its globals seen by ``__main__`` calls, a
task that reached ``max_tasks_per_child`` exits normally (no retry) and a fresh one takes over,
and a failing initializer breaks the executor with no task left running."""

from __future__ import annotations

import collections
import textwrap
from typing import Any

import pytest

from starburst_executor import InitializerFailed
from starburst_executor.testing import FargateEmulator

from .aws_fixtures import fargate, moto_server  # noqa: F401
from .test_fargate_end_to_end import aws_setup, run  # noqa: F401

T = 90

MAIN_SOURCE = textwrap.dedent("""
    import os

    _model = None

    def load_model(path):
        global _model
        _model = (path, os.getpid())

    def predict(x):
        return (_model, os.getpid(), x)

    def failing_init(path):
        raise FileNotFoundError(path)
    """)


@pytest.fixture
def main() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(MAIN_SOURCE, "<notebook-cell>", "exec"), namespace)
    return namespace


def test_initializer_and_max_tasks_per_child_on_fargate(
    run: Any, fargate: FargateEmulator, main: dict[str, Any]  # noqa: F811
) -> None:
    with run(max_workers=1, initializer=main["load_model"], initargs=("m.bin",),
             max_tasks_per_child=2) as ex:
        results = list(ex.map(main["predict"], range(5)))
        usage = ex.usage()
    assert [x for _, _, x in results] == list(range(5))
    # Each call saw the model its own task loaded (the initializer ran in that task).
    assert all(model == ("m.bin", pid) for model, pid, _ in results)
    per_task = collections.Counter(pid for _, pid, _ in results)
    assert sorted(per_task.values()) == [1, 2, 2]
    assert usage.retries == 0 and usage.tasks_launched == len(fargate.tasks) == 3
    assert fargate.wait_stopped(30)
    # The first exited by itself on its stop order, long before the third task ran its call
    # (the last one is stopped at shutdown, with a call left).
    assert fargate.tasks[0].exit_code == 0


def test_a_failing_initializer_breaks_the_executor_on_fargate(
    run: Any, fargate: FargateEmulator, main: dict[str, Any]  # noqa: F811
) -> None:
    ex = run(max_workers=2, initializer=main["failing_init"], initargs=("m.bin",))
    futures = [ex.submit(main["predict"], x) for x in range(4)]
    for future in futures:
        error = future.exception(timeout=T)
        assert isinstance(error, InitializerFailed), error
        assert "failing_init raised FileNotFoundError: m.bin" in str(error)
    assert "failing_init" in str(futures[0].exception().__cause__)
    with pytest.raises(InitializerFailed):
        ex.submit(main["predict"], 9)
    assert fargate.wait_stopped(30), f"tasks still running: {fargate.running()}"
