"""Workers cap the BLAS/OpenMP thread pools to their CPU share, unless the user set them: end to
end on the local backend (the share is the cores divided among the workers)."""

from __future__ import annotations

import os

import pytest

from starburst_executor import FargateExecutor
from starburst_executor._threads import ENV_CPU_SHARE, THREAD_VARIABLES, cpu_share
from starburst_executor.config import load_config
from starburst_executor.launch.local import LocalLauncher

T = 60


def thread_settings() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in (*THREAD_VARIABLES, ENV_CPU_SHARE)}


@pytest.fixture(autouse=True)
def no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*THREAD_VARIABLES, ENV_CPU_SHARE):
        monkeypatch.delenv(name, raising=False)


def test_local_workers_get_the_cores_divided_among_them() -> None:
    expected = str(max(1, cpu_share({}) // 2))
    with FargateExecutor(max_workers=2, backend="local") as ex:
        seen = ex.submit(thread_settings).result(timeout=T)
    assert seen == {**{name: expected for name in THREAD_VARIABLES}, ENV_CPU_SHARE: expected}


def test_a_thread_setting_of_the_user_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with FargateExecutor(max_workers=1, backend="local") as ex:
        seen = ex.submit(thread_settings).result(timeout=T)
    assert seen["OMP_NUM_THREADS"] == "3"
    assert seen["OPENBLAS_NUM_THREADS"] == str(cpu_share({}))


def test_the_local_share_never_drops_below_one() -> None:
    config = load_config({"backend": "local", "max_workers": 10_000}, env={})
    assert LocalLauncher.from_config(config, "s", "file:///x").cpu_share == 1
