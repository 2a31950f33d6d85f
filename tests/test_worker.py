from __future__ import annotations

import itertools
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from starburst_executor import _auth, _keys, payload
from starburst_executor.errors import PayloadVersionError, SerializationError
from starburst_executor.storage.local import LocalStore
from starburst_executor.storage.memory import MemoryStore
from starburst_executor.worker import Worker

from .contracts._exec_funcs import wait_for_gate
from .contracts._wire import SECRET, SECRET_ENV, read_part
from .contracts._wire import assign as _assign
from .contracts._wire import put_batch as _put_batch

_names = itertools.count()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(f"worker-test-{next(_names)}")


def _results(store: Any) -> dict[int, tuple[bool, Any]]:
    out = {}
    for key in store.list(_keys.RESULTS_PREFIX):
        part = read_part(store, key)
        for record in part.records:
            out[record.item_id] = payload.decode_result(record)
    return out


def test_runs_assignments_in_order_then_exits_idle(store: MemoryStore) -> None:
    _put_batch(store, "b1", lambda x: x * 2, [(0, (1,)), (1, (2,))])
    _put_batch(store, "b2", lambda x: -x, [(2, (5,))])
    _assign(store, "w1", 0, "b1")
    _assign(store, "w1", 1, "b2")
    started = time.monotonic()
    assert Worker(store, "w1", secret=SECRET, idle_timeout=0.2).run() == 0
    assert time.monotonic() - started < 5
    assert _results(store) == {0: (True, 2), 1: (True, 4), 2: (True, -5)}


def test_skip_list_is_honoured(store: MemoryStore) -> None:
    _put_batch(store, "b1", lambda x: x, [(0, (1,)), (1, (2,)), (2, (3,))])
    _assign(store, "w1", 0, "b1", skip=[0, 2])
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1).run()
    assert _results(store) == {1: (True, 2)}


def test_stop_order(store: MemoryStore) -> None:
    key = _keys.assign_key("w1", 0)
    store.put(key, payload.Assignment(stop=True).encode(key=key, secret=SECRET))
    started = time.monotonic()
    assert Worker(store, "w1", secret=SECRET, idle_timeout=30).run() == 0
    assert time.monotonic() - started < 5


def test_results_are_written_in_parts_as_calls_finish(store: MemoryStore) -> None:
    _put_batch(store, "b1", time.sleep, [(i, (0.03,)) for i in range(6)])
    _assign(store, "w1", 0, "b1")
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1, flush_interval=0.05).run()
    parts = store.list(_keys.RESULTS_PREFIX)
    assert len(parts) >= 3
    last = read_part(store, parts[-1])
    assert last.final
    assert not any(read_part(store, k).final for k in parts[:-1])


def test_exceptions_travel_per_call(store: MemoryStore) -> None:
    def maybe_fail(x: int) -> int:
        if x == 1:
            raise KeyError(x)
        return x

    _put_batch(store, "b1", maybe_fail, [(0, (0,)), (1, (1,)), (2, (2,))])
    _assign(store, "w1", 0, "b1")
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1).run()
    results = _results(store)
    assert results[0] == (True, 0) and results[2] == (True, 2)
    ok, error = results[1]
    assert not ok and isinstance(error, KeyError)
    assert "maybe_fail" in str(error.__cause__)


def test_refuses_payload_from_another_python(store: MemoryStore) -> None:
    # As a worker of another Python, given this session's secret, would write it.
    header = json.dumps({"format": payload.FORMAT_VERSION, "kind": "batch",
                         "serializer": "cloudpickle", "python": "3.99",
                         "cloudpickle": payload.CLOUDPICKLE_VERSION}).encode()
    key = _keys.batch_key("b1")
    data = payload.MAGIC + struct.pack(">I", len(header)) + header + pickle.dumps(None)
    store.put(key, data + _auth.sign(SECRET, key, (data,)))
    _assign(store, "w1", 0, "b1")
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1).run()
    ok, error = _results(store)[payload.WHOLE_BATCH]
    assert isinstance(error, PayloadVersionError)
    assert "Python 3.99" in str(error) and "starburst build" in str(error)


def test_batch_that_cannot_be_unpickled_fails_as_a_whole(store: MemoryStore) -> None:
    key = _keys.batch_key("b1")
    store.put(key, payload.dump("batch", b"\x80\x05garbage", key=key, secret=SECRET))
    _assign(store, "w1", 0, "b1")
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1).run()
    ok, error = _results(store)[payload.WHOLE_BATCH]
    assert isinstance(error, SerializationError)
    assert "could not be unpickled on worker w1" in str(error)


def test_main_needs_its_environment() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARBURST_")}
    proc = subprocess.run([sys.executable, "-m", "starburst_executor.worker"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "STARBURST_STORE_URL" in proc.stderr


def test_main_as_subprocess_runs_a_batch(tmp_path: Any) -> None:
    store = LocalStore(tmp_path / "session")
    _put_batch(store, "b1", pow, [(0, (2, 10))])
    _assign(store, "w9", 0, "b1")
    env = dict(os.environ, STARBURST_STORE_URL=store.url, STARBURST_WORKER_ID="w9",
               STARBURST_IDLE_TIMEOUT="0.2", **SECRET_ENV)
    proc = subprocess.run([sys.executable, "-m", "starburst_executor.worker"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _results(store) == {0: (True, 1024)}
    assert "batch b1 attempt 1: 1 calls" in proc.stderr


def test_arguments_that_cannot_be_unpickled_fail_their_call_only(store: MemoryStore) -> None:
    _put_batch(store, "b1", lambda x: x, [(0, (1,)), (2, (3,))])
    key = _keys.batch_key("b1")
    batch = payload.Batch.decode(store.get(key), key=key, secret=SECRET)
    broken = payload.Call(1, 0, b"\x80\x05garbage")
    calls = (batch.calls[0], broken, batch.calls[1])
    store.put(key, payload.Batch("b1", batch.digests, calls).encode(key=key, secret=SECRET))
    _assign(store, "w1", 0, "b1")
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1).run()
    results = _results(store)
    assert results[0] == (True, 1) and results[2] == (True, 3)
    ok, error = results[1]
    assert not ok and isinstance(error, SerializationError)
    assert "arguments of call 1 could not be unpickled on worker w1" in str(error)


def test_a_long_batch_of_quick_calls_is_written_in_parts_of_2000(store: MemoryStore) -> None:
    _put_batch(store, "b1", lambda x: x + 1, [(i, (i,)) for i in range(4500)])
    _assign(store, "w1", 0, "b1")
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1, flush_interval=3600).run()
    parts = [read_part(store, key) for key in sorted(store.list(_keys.RESULTS_PREFIX))]
    assert [len(p.records) for p in parts] == [2000, 2000, 500]
    assert [p.final for p in parts] == [False, False, True]
    assert _results(store) == {i: (True, i + 1) for i in range(4500)}


class _RemoteStore(MemoryStore):
    """A memory store that passes for S3 (``is_remote``): the worker overlaps round trips."""

    def __init__(self) -> None:
        super().__init__(f"worker-test-{next(_names)}")
        self.url = "s3://bucket/worker-test"


def test_on_a_remote_store_parts_are_written_by_time_not_by_count() -> None:
    store = _RemoteStore()
    _put_batch(store, "b1", lambda x: x + 1, [(i, (i,)) for i in range(4500)])
    _assign(store, "w1", 0, "b1")
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1, flush_interval=3600).run()
    parts = [read_part(store, key) for key in sorted(store.list(_keys.RESULTS_PREFIX))]
    assert [(len(p.records), p.final) for p in parts] == [(4500, True)]  # one request


class _SlowRemoteStore(_RemoteStore):
    """Passes for S3; a result part's PUT waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.next_read_while_writing = threading.Event()
        self._writing = False

    def put(self, key: str, data: Any) -> None:
        if key.startswith(_keys.RESULTS_PREFIX):
            self._writing = True
            self.release.wait(10)
            self._writing = False
        super().put(key, data)

    def get(self, key: str) -> bytes:
        if key.startswith("assign/") and self._writing:
            self.next_read_while_writing.set()
            self.release.set()
        return super().get(key)


def test_a_batchs_last_part_is_written_while_the_next_assignment_is_read() -> None:
    store = _SlowRemoteStore()
    _put_batch(store, "b1", lambda x: x * 2, [(0, (1,))])
    _put_batch(store, "b2", lambda x: x * 3, [(1, (1,))])
    _assign(store, "w1", 0, "b1")
    _assign(store, "w1", 1, "b2")
    assert Worker(store, "w1", secret=SECRET, idle_timeout=0.2).run() == 0
    assert store.next_read_while_writing.is_set()  # the two round trips overlapped
    # Every part is out before the worker exits, the last one included.
    assert _results(store) == {0: (True, 2), 1: (True, 3)}


class _CountingRemoteStore(_RemoteStore):
    """Passes for S3; counts the reads of each key and says when ``watched`` is read."""

    def __init__(self, watched: str) -> None:
        super().__init__()
        self.watched = watched
        self.read = threading.Event()
        self.gets: dict[str, int] = {}

    def get(self, key: str) -> bytes:
        self.gets[key] = self.gets.get(key, 0) + 1
        try:
            return super().get(key)
        finally:
            if key == self.watched:
                self.read.set()


def _serve_in_background(store: Any) -> threading.Thread:
    worker = Worker(store, "w1", secret=SECRET, idle_timeout=0.3)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("queued_in_time", [True, False])
def test_the_next_assignment_is_read_once_late_in_a_long_batch(
        tmp_path: Any, queued_in_time: bool) -> None:
    second = _keys.assign_key("w1", 1)
    store = _CountingRemoteStore(watched=second)
    release = str(tmp_path / "release")
    _put_batch(store, "b1", wait_for_gate, [(0, (release, release))])
    _put_batch(store, "b2", lambda x: x * 3, [(1, (1,))])
    _assign(store, "w1", 0, "b1", expected=0.8)  # read ahead 0.6 s into it
    if queued_in_time:
        _assign(store, "w1", 1, "b2")  # queued behind it, as the client does
    thread = _serve_in_background(store)
    assert store.read.wait(10)  # read while b1 still waits for its release
    assert store.gets[second] == 1
    if not queued_in_time:
        _assign(store, "w1", 1, "b2")  # too late for the early read: the usual polls find it
    open(release, "w").close()
    thread.join(10)
    assert not thread.is_alive()
    assert _results(store) == {0: (True, release), 1: (True, 3)}
    # Found early: not read again after b1; else read again until found.
    assert (store.gets[second] == 1) is queued_in_time


class _ClaimWaitsForFunctionStore(_RemoteStore):
    """Passes for S3; writing a claim waits (a while) for the batch's function to be read."""

    def __init__(self) -> None:
        super().__init__()
        self.function_read = threading.Event()
        self.overlapped = False

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if key.startswith(_keys.CLAIMS_PREFIX):
            self.overlapped = self.function_read.wait(10)
        return super().put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        if key.startswith(_keys.function_key("")):
            self.function_read.set()
        return super().get(key)


def test_a_new_function_is_read_while_the_claim_of_its_batch_is_written() -> None:
    store = _ClaimWaitsForFunctionStore()
    _put_batch(store, "b1", lambda x: x * 2, [(0, (4,))])
    inline = store.get(_keys.batch_key("b1"))  # a small batch travels in its assignment
    key = _keys.assign_key("w1", 0)
    store.put(key, payload.Assignment("b1", 1, batch=inline).encode(key=key, secret=SECRET))
    assert Worker(store, "w1", secret=SECRET, idle_timeout=0.1).run() == 0
    assert store.overlapped  # the two round trips went side by side
    assert _results(store) == {0: (True, 8)}


@pytest.mark.parametrize("inline_batch", [True, False])
def test_a_function_sent_inside_its_assignment_is_not_read(inline_batch: bool) -> None:
    store = _RemoteStore()
    _put_batch(store, "b1", lambda x: x * 5, [(0, (3,))])
    (function_key,) = store.list(_keys.function_key(""))
    function = store.get(function_key)
    store.delete_prefix(function_key)  # read, it would fail the batch
    key = _keys.assign_key("w1", 0)
    body = store.get(_keys.batch_key("b1")) if inline_batch else b""
    order = payload.Assignment("b1", 1, batch=body, function=function)
    store.put(key, order.encode(key=key, secret=SECRET))
    assert Worker(store, "w1", secret=SECRET, idle_timeout=0.1).run() == 0
    assert _results(store) == {0: (True, 15)}


def test_a_function_sent_for_another_batch_fails_its_check(store: MemoryStore) -> None:
    _put_batch(store, "b1", lambda x: x * 5, [(0, (3,))])
    _put_batch(store, "b2", lambda x: x * 7, [(1, (3,))])
    (first, second) = store.list(_keys.function_key(""))
    key = _keys.assign_key("w1", 0)
    # b1's function is one of the two: the other, sent as b1's, must be refused.
    batch = payload.Batch.decode(store.get(_keys.batch_key("b1")), key=_keys.batch_key("b1"),
                                 secret=SECRET)
    wrong = second if batch.digests[0] in first else first
    order = payload.Assignment("b1", 1, function=store.get(wrong))
    store.put(key, order.encode(key=key, secret=SECRET))
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1).run()
    ((ok, error),) = _results(store).values()
    assert not ok and "integrity" in str(error).lower(), error
