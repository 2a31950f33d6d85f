"""What a remote call prints and logs reaches the client, end to end on the local backend:
written to the client's stdout and stderr (each line marked with its call) before its future
resolves, kept on ``future.metadata.output``, and not at all with ``forward_output=False``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import pytest

from starburst_executor import FargateExecutor
from starburst_executor._output import LIMIT
from starburst_executor.config import load_config

T = 60


def chatty(x: int) -> int:
    print(f"hello {x}")
    print(f"oops {x}", file=sys.stderr)
    logging.warning("careful %d", x)  # an unconfigured program's logging
    return x * 10


def configures_logging(x: int) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").info("step %d", x)
    return x


def fails(x: int) -> int:
    print("about to fail")
    raise ValueError(x)


def floods(n: int) -> int:
    line = "x" * 99 + "\n"
    for _ in range(n):
        sys.stdout.write(line)
    print("the end")
    return n


def test_prints_and_logs_reach_the_client_and_the_metadata(
        capfd: pytest.CaptureFixture[str]) -> None:
    with FargateExecutor(max_workers=1, backend="local") as ex:
        future = ex.submit(chatty, 3)
        assert future.result(timeout=T) == 30
        # Written before the future resolved: nothing to wait for.
        out, err = capfd.readouterr()
    assert out.splitlines().count("[call 0] hello 3") == 1  # once: not also by the worker
    assert "[call 0] oops 3" in err.splitlines()
    assert "[call 0] WARNING:root:careful 3" in err.splitlines()
    meta = future.metadata
    assert meta.stdout == "hello 3\n"
    assert meta.stderr == "oops 3\nWARNING:root:careful 3\n"
    assert meta.output == (("stdout", "hello 3\n"), ("stderr", meta.stderr))


def test_each_call_keeps_its_own_output(capfd: pytest.CaptureFixture[str]) -> None:
    with FargateExecutor(max_workers=1, backend="local") as ex:
        futures = [ex.submit(configures_logging, x) for x in range(3)]
        assert [f.result(timeout=T) for f in futures] == [0, 1, 2]
        err = capfd.readouterr().err
    for f in futures:
        x = f.result()
        assert f.metadata.stderr == f"INFO app: step {x}\n"  # basicConfig works in a call
        assert f"[call {f.metadata.item_id}] INFO app: step {x}" in err.splitlines()


def test_a_failing_call_brings_its_output_too(capsys: pytest.CaptureFixture[str]) -> None:
    with FargateExecutor(max_workers=1, backend="local") as ex:
        future = ex.submit(fails, 4)
        assert isinstance(future.exception(timeout=T), ValueError)
    assert future.metadata.stdout == "about to fail\n"
    assert "[call 0] about to fail" in capsys.readouterr().out


def test_a_flood_of_output_is_cut_to_its_last_mib(capsys: pytest.CaptureFixture[str]) -> None:
    lines = 2 * LIMIT // 100
    with FargateExecutor(max_workers=1, backend="local") as ex:
        future = ex.submit(floods, lines)
        assert future.result(timeout=T) == lines
    capsys.readouterr()
    note, (stream, text) = future.metadata.output
    assert note[0] == "stderr" and "characters of output dropped" in note[1]
    assert stream == "stdout" and len(text) == LIMIT and text.endswith("x\nthe end\n")


@pytest.mark.parametrize("turn_off", [
    lambda mp: {"forward_output": False},
    lambda mp: mp.setenv("STARBURST_FORWARD_OUTPUT", "0") or {},
], ids=["argument", "environment"])
def test_the_setting_turns_it_off(turn_off: Callable[[pytest.MonkeyPatch], dict[str, bool]],
                                  monkeypatch: pytest.MonkeyPatch,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    settings = turn_off(monkeypatch)
    with FargateExecutor(max_workers=1, backend="local", **settings) as ex:
        future = ex.submit(chatty, 5)
        assert future.result(timeout=T) == 50
        out, err = capfd.readouterr()
    assert "hello 5" not in out and "oops 5" not in err
    assert future.metadata.output == ()


def test_the_setting_reads_like_the_others() -> None:
    assert load_config({}, env={}).forward_output is True
    assert load_config({}, env={"STARBURST_FORWARD_OUTPUT": "off"}).forward_output is False
