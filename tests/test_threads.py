"""Thread-pool caps of a worker: its CPU share, never the user's own settings."""

from __future__ import annotations

from pathlib import Path

from starburst_executor import _threads
from starburst_executor._threads import ENV_CPU_SHARE, THREAD_VARIABLES, cap_thread_pools, cpu_share


def test_the_launcher_share_wins() -> None:
    assert cpu_share({ENV_CPU_SHARE: "4"}, cgroup_cpus=1.0, usable=64) == 4
    assert cpu_share({ENV_CPU_SHARE: "0.25"}, usable=64) == 1


def test_a_container_quota_caps_the_visible_cores() -> None:
    assert cpu_share({}, cgroup_cpus=2.0, usable=64) == 2
    assert cpu_share({}, cgroup_cpus=0.5, usable=64) == 1
    assert cpu_share({}, cgroup_cpus=None, usable=8) == 8


def test_cgroup_files_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")
    assert _threads._cgroup_cpus(str(v2)) == 1.5
    v2.write_text("max 100000\n")
    assert _threads._cgroup_cpus(str(v2)) is None
    quota, period = tmp_path / "quota", tmp_path / "period"
    quota.write_text("200000")
    period.write_text("100000")
    assert _threads._cgroup_cpus(str(tmp_path / "none"), (str(quota), str(period))) == 2.0
    quota.write_text("-1")
    assert _threads._cgroup_cpus(str(tmp_path / "none"), (str(quota), str(period))) is None


def test_caps_only_what_the_user_left_unset() -> None:
    env = {"OMP_NUM_THREADS": "7", ENV_CPU_SHARE: "2"}
    changed = cap_thread_pools(env)
    assert env["OMP_NUM_THREADS"] == "7"
    assert set(changed) == set(THREAD_VARIABLES) - {"OMP_NUM_THREADS"}
    assert all(env[name] == "2" for name in changed)
