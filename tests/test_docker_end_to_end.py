"""``FargateExecutor(backend="docker")``: the whole pipeline with real containers of the worker
image (built once per session from this checkout).  Skipped without a Docker daemon."""

from __future__ import annotations

import operator
from typing import Any

import pytest

from starburst_executor import FargateExecutor
from starburst_executor.errors import RemoteTraceback, WorkerLost
from starburst_executor.launch.docker import LABEL_MANAGED

from .docker_fixtures import base_image, docker_client, worker_image  # noqa: F401

pytestmark = pytest.mark.timeout(300)
T = 120  # seconds a result may take (a container starts in about a second)


def _running(client: Any) -> list[Any]:
    return client.containers.list(filters={"label": f"{LABEL_MANAGED}=true", "status": "running"})


def test_map_runs_in_containers_and_leaves_none_behind(worker_image: str, docker_client: Any
                                                      ) -> None:
    factor = 3
    with FargateExecutor(max_workers=2, backend="docker", image=worker_image, memory="256MB",
                         cpu=0.5) as ex:
        assert list(ex.map(lambda x: x * factor, range(40), chunksize=5, timeout=T)) == [
            x * 3 for x in range(40)]
        # The worker's Python is the image's, not this process's.
        import_path = ex.submit(lambda: __import__("starburst_executor").__file__).result(T)
        assert import_path.startswith("/opt/starburst/worker/")
    assert not _running(docker_client)


def test_remote_exception_keeps_its_type_and_traceback(worker_image: str) -> None:
    def fail(x: int) -> int:
        raise KeyError(f"missing {x}")

    with FargateExecutor(max_workers=1, backend="docker", image=worker_image,
                         memory="256MB") as ex:
        future = ex.submit(fail, 7)
        with pytest.raises(KeyError, match="missing 7") as info:
            future.result(T)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail" in str(info.value.__cause__)


def test_an_oom_killed_worker_fails_its_batch_with_the_reason(worker_image: str) -> None:
    with FargateExecutor(max_workers=1, backend="docker", image=worker_image, memory="64MB",
                         max_retries=0) as ex:
        future = ex.submit(operator.mul, b"x", 256 * 2**20)
        with pytest.raises(WorkerLost) as info:
            future.result(T)
    assert info.value.exit_code == 137
    assert "OutOfMemoryError" in (info.value.stopped_reason or "")
