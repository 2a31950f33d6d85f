"""Large values travel without copies (``_chunks``), and ``max_result_size`` fails a call whose
result or arguments pass it, at once and alone.  (The big sizes are in benchmarks/memory.py.)"""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import pytest

from starburst_executor import FargateExecutor, _chunks, _keys, payload
from starburst_executor.errors import (
    ArgumentsTooLarge,
    ConfigError,
    IntegrityError,
    PayloadTooLarge,
    ResultTooLarge,
)
from starburst_executor.storage.memory import MemoryStore
from starburst_executor.worker import Worker

from .contracts._wire import SECRET, read_part
from .contracts._wire import assign as _assign
from .contracts._wire import put_batch as _put_batch

MB = 1024 * 1024
T = 60
_names = itertools.count()


def test_a_large_bytes_is_kept_by_reference_not_copied() -> None:
    big = b"x" * MB
    chunks = _chunks.dumps(big)
    assert any(part is big for part in chunks.parts)
    assert len(chunks) == len(bytes(chunks)) and pickle.loads(bytes(chunks)) == big


def test_a_bytearray_is_copied_so_later_changes_do_not_travel() -> None:
    data = bytearray(b"a" * MB)
    chunks = _chunks.dumps(data)
    data[:1] = b"b"
    assert pickle.loads(bytes(chunks))[:1] == b"a"


def test_pickling_stops_at_the_limit() -> None:
    with pytest.raises(_chunks.TooLarge) as info:
        _chunks.dumps(list(range(10**6)), limit=100_000)
    assert info.value.limit == 100_000 and info.value.size > 100_000


def test_pack_keeps_chunks_out_of_band_and_reads_them_as_views() -> None:
    value = _chunks.dumps(b"v" * MB)
    packed = _chunks.pack({"a": value, "b": [_chunks.Chunks([b"12", b"34"])], "c": 3})
    assert any(part is value.parts[1] for part in packed.parts)  # not copied into the pickle
    data = bytes(packed)
    read = _chunks.unpack(data)
    assert isinstance(read["a"], memoryview) and read["a"].obj is data
    assert pickle.loads(read["a"]) == b"v" * MB
    assert bytes(read["b"][0]) == b"1234" and read["c"] == 3
    with pytest.raises(pickle.UnpicklingError):
        _chunks.unpack(data[:-1])


def _part(records: list[payload.ResultRecord]) -> payload.ResultPart:
    return payload.ResultPart("b1", 1, "w1", records, True)


def test_a_result_part_round_trips_in_chunks() -> None:
    part = _part([payload.encode_value(0, b"r" * MB, 1.0, 2.0),
                  payload.encode_value(1, {"k": [1, 2]}, 1.0, 2.0),
                  payload.encode_exception(2, ValueError("bad"), 1.0, 2.0)])
    framed = part.encode(key="results/b1.1.00000", secret=SECRET)
    assert isinstance(framed, _chunks.Chunks) and len(framed.parts) > 3
    read = payload.ResultPart.decode(bytes(framed), key="results/b1.1.00000", secret=SECRET)
    assert [payload.decode_result(r)[1] for r in read.records[:2]] == [b"r" * MB, {"k": [1, 2]}]
    ok, error = payload.decode_result(read.records[2])
    assert not ok and isinstance(error, ValueError)


@pytest.mark.parametrize("change", ["key", "truncated", "flipped"])
def test_a_chunked_frame_that_was_tampered_with_is_refused(change: str) -> None:
    key = "results/b1.1.00000"
    data = bytes(_part([payload.encode_value(0, b"r" * MB, 1.0, 2.0)]).encode(
        key=key, secret=SECRET))
    if change == "key":
        key = "results/b2.1.00000"
    elif change == "truncated":
        data = data[:-100]
    else:
        data = data[:MB // 2] + bytes([data[MB // 2] ^ 1]) + data[MB // 2 + 1:]
    with pytest.raises(IntegrityError):
        payload.ResultPart.decode(data, key=key, secret=SECRET)


def test_worker_fails_only_the_call_whose_result_is_too_large() -> None:
    store = MemoryStore(f"memory-test-{next(_names)}")
    _put_batch(store, "b1", lambda n: b"z" * n, [(0, (10,)), (1, (2 * MB,)), (2, (20,))])
    _assign(store, "w1", 0, "b1")
    Worker(store, "w1", secret=SECRET, idle_timeout=0.1, max_result_size=MB).run()
    results: dict[int, Any] = {}
    for key in store.list(_keys.RESULTS_PREFIX):
        for record in read_part(store, key).records:
            results[record.item_id] = payload.decode_result(record)
    assert results[0] == (True, b"z" * 10) and results[2] == (True, b"z" * 20)
    ok, error = results[1]
    assert not ok and isinstance(error, ResultTooLarge)
    assert "max_result_size=1048576" in str(error) and "bytes" in str(error)


def make_bytes(n: int) -> bytes:
    return b"z" * n


def length(data: bytes) -> int:
    return len(data)


def test_executor_fails_a_call_at_once_when_its_result_or_arguments_are_too_large() -> None:
    with FargateExecutor(max_workers=1, backend="local", max_result_size="1MB",
                         max_retries=3) as ex:
        too_big = ex.submit(make_bytes, 2 * MB)
        fine = ex.submit(make_bytes, 100)
        big_args = ex.submit(length, b"a" * (2 * MB))
        with pytest.raises(ResultTooLarge, match="max_result_size"):
            too_big.result(timeout=T)
        assert too_big.metadata.attempts == 1  # not retried
        assert fine.result(timeout=T) == b"z" * 100
        with pytest.raises(ArgumentsTooLarge, match="max_result_size"):
            big_args.result(timeout=T)
        assert ex.submit(length, b"a" * 100).result(timeout=T) == 100  # still usable
    assert issubclass(ResultTooLarge, PayloadTooLarge)


def test_max_result_size_setting() -> None:
    with pytest.raises(ConfigError, match="max_result_size"):
        FargateExecutor(backend="local", max_result_size="lots")


def test_max_result_size_reads_bytes_and_units() -> None:
    from starburst_executor.config import load_config
    assert load_config(env={"STARBURST_MAX_RESULT_SIZE": "500MB"}).max_result_size == 500 * MB
    assert load_config({"max_result_size": 1000}, env={}).max_result_size == 1000
    assert load_config({"max_result_size": "1.5KiB"}, env={}).max_result_size == 1536
    for bad in (0, "-1", "5 parsecs", True):
        with pytest.raises(ConfigError):
            load_config({"max_result_size": bad}, env={})
