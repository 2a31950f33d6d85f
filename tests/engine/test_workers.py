from __future__ import annotations

from collections.abc import Sequence

from starburst_executor import _keys, payload
from starburst_executor._future import CallMetadata, StarburstFuture
from starburst_executor.config import load_config
from starburst_executor.engine import Ledger
from starburst_executor.engine.batches import Batch
from starburst_executor.engine.workers import Worker, Workers
from starburst_executor.errors import LaunchError
from starburst_executor.launch.base import LaunchFailure, TaskHandle, TaskState

from .fakes import SECRET, ScriptedLauncher, memory_store


def _workers(launcher: ScriptedLauncher, **settings: object) -> tuple[Workers, Ledger]:
    config = load_config({"backend": "local", **settings})
    ledger = Ledger(None, None)
    return Workers(memory_store(), launcher, config, 4, ledger, secret=SECRET), ledger


def test_launch_gives_each_worker_keys_only() -> None:
    launcher = ScriptedLauncher()
    workers, _ = _workers(launcher, idle_timeout=7)
    started, error = workers.launch(2)
    assert error is None and [w.worker_id for w in started] == ["w00000", "w00001"]
    env = launcher.started[0].env
    assert env[_keys.ENV_WORKER_ID] == "w00000" and env[_keys.ENV_IDLE_TIMEOUT] == "7"
    assert len(workers) == 2


def test_a_worker_that_cannot_be_started_fails_the_work_when_none_runs() -> None:
    workers, _ = _workers(ScriptedLauncher([LaunchFailure("", "no such image", False)]))
    started, error = workers.launch(1)
    assert started == [] and isinstance(error, LaunchError)
    assert "no such image" in str(error)


def test_a_transient_failure_backs_off() -> None:
    workers, _ = _workers(ScriptedLauncher([LaunchFailure("", "throttled", True)]))
    assert workers.launch(1) == ([], None)
    assert not workers.may_launch()


def test_assign_writes_the_next_attempt_without_the_calls_done() -> None:
    workers, _ = _workers(ScriptedLauncher())
    (worker,), _ = workers.launch(1)
    batch = Batch("b000000001", {}, done_ids={3, 1})
    workers.assign(worker, batch)
    workers.assign(worker, batch)
    store = workers._store
    key = _keys.assign_key(worker.worker_id, 1)
    order = payload.Assignment.decode(store.get(key), key=key, secret=SECRET)
    assert order == payload.Assignment("b000000001", 2, frozenset({1, 3}))
    assert worker.batch is batch and batch.worker is worker


def test_a_small_function_is_sent_with_each_workers_first_batch_of_it() -> None:
    workers, _ = _workers(ScriptedLauncher())
    (first, second), _ = workers.launch(2)
    store = workers._store

    def sent(worker: Worker, batch: Batch) -> bytes:
        key = _keys.assign_key(worker.worker_id, worker.seq)
        workers.assign(worker, batch)
        return payload.Assignment.decode(store.get(key), key=key, secret=SECRET).function

    a, b = Batch("b000000001", {}, digest="f1", function=b"F1"), Batch(
        "b000000002", {}, digest="f1", function=b"F1")
    assert [sent(first, a), sent(first, b), sent(second, b)] == [b"F1", b"", b"F1"]
    large = Batch("b000000003", {}, digest="f2")  # too large to travel: read from the store
    assert sent(first, large) == b""


def test_assignments_made_together_are_written_as_the_block_ends() -> None:
    workers, _ = _workers(ScriptedLauncher())
    started, _ = workers.launch(2)
    store = workers._store
    keys = [_keys.assign_key(w.worker_id, 0) for w in started]
    with workers.together():
        for i, worker in enumerate(started):
            workers.assign(worker, Batch(f"b00000000{i}", {}))
        assert [k for k in keys if k in store.list("")] == []
        assert started[0].batch is not None  # assigned (and revocable) already
    assert [k for k in keys if k in store.list("")] == keys
    workers.assign(started[0], Batch("b000000009", {}))  # outside a block: at once
    assert _keys.assign_key(started[0].worker_id, 1) in store.list("")


def test_stop_all_ends_every_span() -> None:
    launcher = ScriptedLauncher()
    workers, ledger = _workers(launcher)
    workers.launch(3)
    workers.stop_all("max_cost reached")
    assert len(workers) == 0 and len(launcher.stopped) == 3
    seconds, _ = ledger.billed()
    assert seconds < 5


def test_each_worker_gets_the_session_secret_which_no_repr_shows() -> None:
    from starburst_executor import _auth

    launcher = ScriptedLauncher()
    workers, _ = _workers(launcher)
    workers.launch(1)
    spec = launcher.started[0]
    assert _auth.secret_from_env(spec.env[_auth.ENV_SECRET]) == SECRET
    assert SECRET.hex() not in repr(spec)


def test_the_initializer_is_put_once_and_its_key_travels_to_every_worker() -> None:
    launcher = ScriptedLauncher()
    workers, _ = _workers(launcher)
    workers.initializer = (print, ("hello",))
    workers.launch(1)
    workers.launch(1)
    keys = workers._store.list("initializer/")
    assert len(keys) == 1
    assert {spec.env[_keys.ENV_INITIALIZER] for spec in launcher.started} == {keys[0]}


def test_a_worker_past_max_tasks_per_child_is_retired_with_a_stop_order() -> None:
    launcher = ScriptedLauncher()
    workers, _ = _workers(launcher, max_tasks_per_child=5)
    (worker,), _ = workers.launch(1)
    assert worker.calls_left == 5
    futures = {i: StarburstFuture(CallMetadata(i, 0.0)) for i in range(3)}
    workers.assign(worker, Batch("b000000001", futures))
    assert worker.calls_left == 2
    worker.batch = None
    workers.retire(worker, "max_tasks_per_child=5 calls done")
    key = _keys.assign_key(worker.worker_id, 1)
    order = payload.Assignment.decode(workers._store.get(key), key=key, secret=SECRET)
    assert order.stop and workers.live() == []
    assert [w for w, _ in workers.watch()] == []  # still watched (running) until it stopped


def test_task_states_are_polled_at_most_every_shortest_poll() -> None:
    class Counting(ScriptedLauncher):
        poll_interval = (30.0, 60.0)  # no test gets near it
        polls = 0

        def poll(self, handles: Sequence[TaskHandle]) -> list[TaskState]:
            self.polls += 1
            return super().poll(handles)

    launcher = Counting()
    workers, _ = _workers(launcher)
    (worker,), _ = workers.launch(1)
    workers.assign(worker, Batch("b000000001", {0: StarburstFuture(CallMetadata(0, 0.0))}))
    workers.watch()
    assert worker.started and launcher.polls == 1
    assert workers.watch() == [] and launcher.polls == 1  # the manager looks again at once
