from __future__ import annotations

import dataclasses
import json
import pickle
import struct
import threading

import cloudpickle
import pytest

from starburst_executor import _auth, _chunks, payload
from starburst_executor.errors import (
    ArgumentsTooLarge,
    IntegrityError,
    PayloadVersionError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
)


S = b"k" * 32


def test_round_trip_with_header() -> None:
    data = payload.dump("function", cloudpickle.dumps(len), key="functions/x", secret=S)
    header, _ = payload.read_header(data)
    assert header["kind"] == "function"
    assert header["python"] == payload.PYTHON_MINOR
    assert payload.load(data, "function", key="functions/x", secret=S) is len


def _forge(kind: str, python: str, cloudpickle_version: str,
           fmt: int = payload.FORMAT_VERSION, key: str = "k") -> bytes:
    header = json.dumps({"format": fmt, "kind": kind, "serializer": "cloudpickle",
                         "python": python, "cloudpickle": cloudpickle_version}).encode()
    data = payload.MAGIC + struct.pack(">I", len(header)) + header + pickle.dumps(1)
    return data + _auth.sign(S, key, (data,))


def _load(data: bytes, kind: str, key: str = "k") -> object:
    return payload.load(data, kind, key=key, secret=S)


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_explode, ())


def _explode() -> None:
    raise AssertionError("unpickled although it failed its check")


@pytest.mark.parametrize("change", ["key", "secret", "truncated", "flipped", "unsigned"])
def test_an_object_that_fails_its_mac_is_never_unpickled(change: str) -> None:
    body = pickle.dumps(_Boom())
    data = payload.dump("results", body, key="results/b1.1.00000", secret=S)
    key, secret = "results/b1.1.00000", S
    if change == "key":
        key = "results/b2.1.00000"  # moved to another name
    elif change == "secret":
        secret = b"x" * 32  # another session's
    elif change == "truncated":
        data = data[:-40]
    elif change == "flipped":
        data = data[:20] + bytes([data[20] ^ 1]) + data[21:]
    else:
        data = data[:-_auth.MAC_SIZE]
    with pytest.raises(IntegrityError, match="results/b"):
        payload.load(data, "results", key=key, secret=secret)


def test_an_object_of_the_previous_format_is_a_version_error() -> None:
    header = json.dumps({"format": 1, "kind": "batch", "python": payload.PYTHON_MINOR,
                         "cloudpickle": payload.CLOUDPICKLE_VERSION}).encode()
    data = payload.MAGIC + struct.pack(">I", len(header)) + header + pickle.dumps(1)
    with pytest.raises(PayloadVersionError, match="format 1"):
        _load(data, "batch")


def test_integrity_error_pickles_with_its_key() -> None:
    error = pickle.loads(pickle.dumps(IntegrityError("functions/abc", "why")))
    assert isinstance(error, SerializationError)
    assert error.key == "functions/abc" and "functions/abc" in str(error)


def test_other_python_minor_is_refused_with_what_to_rebuild() -> None:
    with pytest.raises(PayloadVersionError, match=r"Python 3\.99.*starburst build"):
        _load(_forge("batch", "3.99", payload.CLOUDPICKLE_VERSION), "batch")


def test_other_cloudpickle_major_is_refused() -> None:
    with pytest.raises(PayloadVersionError, match="cloudpickle 99.0"):
        _load(_forge("batch", payload.PYTHON_MINOR, "99.0"), "batch")


def test_other_format_is_refused() -> None:
    with pytest.raises(PayloadVersionError, match="format"):
        _load(_forge("batch", payload.PYTHON_MINOR, payload.CLOUDPICKLE_VERSION, 99), "batch")


def test_wrong_kind_and_garbage() -> None:
    with pytest.raises(SerializationError, match="expected a batch"):
        _load(payload.dump("results", pickle.dumps(1), key="k", secret=S), "batch")
    with pytest.raises(IntegrityError):
        _load(b"hello world, a planted object of more than thirty-two bytes", "batch")


class CustomError(Exception):
    def __init__(self, code: int, text: str):
        super().__init__(code, text)
        self.code = code


def test_exception_keeps_type_args_and_gets_remote_traceback() -> None:
    try:
        raise CustomError(7, "boom")
    except CustomError as exc:
        record = payload.encode_exception(3, exc, 1.0, 2.0)
    ok, error = payload.decode_result(record)
    assert not ok
    assert isinstance(error, CustomError)
    assert error.args == (7, "boom") and error.code == 7
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "test_exception_keeps_type_args" in str(error.__cause__)


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("has a lock")
        self.lock = threading.Lock()


def test_exception_that_cannot_be_pickled_becomes_remote_error() -> None:
    record = payload.encode_exception(1, Unpicklable(), 0.0, 0.0)
    ok, error = payload.decode_result(record)
    assert isinstance(error, RemoteError)
    assert error.type_name.endswith("Unpicklable")
    assert error.message == "has a lock"
    assert "could not be pickled" in str(error)


def test_exception_that_cannot_be_unpickled_becomes_remote_error() -> None:
    record = payload.encode_exception(1, ValueError("x"), 0.0, 0.0)
    broken = payload.ResultRecord(record.item_id, False, b"not a pickle", record.type_name,
                                  record.error)
    ok, error = payload.decode_result(broken)
    assert isinstance(error, RemoteError)
    assert error.type_name == "ValueError" and error.message == "x"
    assert "could not be unpickled here" in str(error)


def test_unpicklable_result_names_its_type() -> None:
    record = payload.encode_value(4, threading.Lock(), 0.0, 0.0)
    ok, error = payload.decode_result(record)
    assert not ok
    assert isinstance(error, SerializationError)
    assert "result of call 4" in str(error) and "lock" in str(error)


def test_result_that_cannot_be_unpickled_names_its_type() -> None:
    record = payload.ResultRecord(2, True, b"garbage", "some.module.Thing")
    ok, error = payload.decode_result(record)
    assert isinstance(error, SerializationError)
    assert "some.module.Thing" in str(error)


def test_pickle_args_names_the_unpicklable_argument() -> None:
    with pytest.raises(SerializationError, match=r"kwargs\['lock'\] \(a _thread.lock\)"):
        payload.pickle_args(9, (1, 2), {"lock": threading.Lock()})
    with pytest.raises(SerializationError, match=r"args\[1\]"):
        payload.pickle_args(9, (1, threading.Lock()), {})


def test_pickle_function_names_the_function() -> None:
    lock = threading.Lock()

    def holds_lock() -> None:
        lock.acquire()

    with pytest.raises(SerializationError, match="holds_lock"):
        payload.pickle_function(holds_lock)


def test_function_digest_is_content_hash() -> None:
    a = payload.pickle_function(lambda x: x + 1)
    assert payload.function_digest(a) == payload.function_digest(bytes(a))
    assert payload.function_digest(a) != payload.function_digest(
        payload.pickle_function(lambda x: x + 2))


def test_assignment_round_trip() -> None:
    order = payload.Assignment("b000000007", 3, frozenset({4, 1}))
    data = order.encode(key="a", secret=S)
    body = payload.open_frame(data, "assign", key="a", secret=S)
    assert json.loads(bytes(body)) == {"batch": "b000000007", "attempt": 3, "skip": [1, 4]}
    assert payload.Assignment.decode(data, key="a", secret=S) == order
    short = payload.dump("assign", b'{"batch": "b1", "attempt": 1}', key="a", secret=S)
    assert payload.Assignment.decode(short, key="a", secret=S).skip == frozenset()
    assert payload.Assignment.decode(short, key="a", secret=S).expected == 0.0  # not known
    timed = payload.Assignment("b000000007", 3, expected=2.0004)
    data = timed.encode(key="a", secret=S)
    assert json.loads(bytes(payload.open_frame(data, "assign", key="a", secret=S)))[
        "expected"] == 2.0
    assert payload.Assignment.decode(data, key="a", secret=S).expected == 2.0
    stop = payload.Assignment(stop=True)
    assert payload.Assignment.decode(stop.encode(key="a", secret=S), key="a", secret=S) == stop
    inline = payload.Assignment("b000000007", 1, batch=b"SBX1\n{binary}\x00\n")
    assert payload.Assignment.decode(inline.encode(key="a", secret=S), key="a",
                                     secret=S) == inline
    function = payload.dump("function", b"\n{pickle}\n", key="f", secret=S)
    for order in (dataclasses.replace(inline, function=function),
                  payload.Assignment("b000000007", 1, function=function)):  # batch stored
        assert payload.Assignment.decode(order.encode(key="a", secret=S), key="a",
                                         secret=S) == order
    with pytest.raises(IntegrityError):
        payload.Assignment.decode(b'{"stop": true}' * 4, key="a", secret=S)


def test_batch_round_trip_keeps_each_calls_arguments_apart() -> None:
    pickler = payload.ArgsPickler()
    shared = [1, 2, 3]
    calls = tuple(payload.Call(i, 0, pickler.dumps(i, (shared,), {"k": i})) for i in range(3))
    batch = payload.Batch("b1", ("digest",), calls)
    decoded = payload.Batch.decode(bytes(batch.encode(key="b", secret=S)), key="b", secret=S)
    assert decoded == batch
    assert [c.arguments() for c in decoded.calls] == [(([1, 2, 3],), {"k": i}) for i in range(3)]


def test_args_pickler_recovers_after_a_failure() -> None:
    pickler = payload.ArgsPickler()
    with pytest.raises(SerializationError):
        pickler.dumps(0, (threading.Lock(),), {})
    assert pickle.loads(bytes(pickler.dumps(1, ([5],), {}))) == (([5],), {})  # type: ignore[arg-type]


def test_plain_arguments_travel_in_one_list_and_others_on_their_own() -> None:
    pickler = payload.ArgsPickler()
    plain = pickler.dumps(0, (1, 2.5, "s", b"b", None, True), {})
    assert isinstance(plain, payload.PlainArgs) and len(plain) >= 6 * 9
    assert not isinstance(pickler.dumps(9, (2 ** 100,), {}), payload.PlainArgs)  # a big int
    assert not isinstance(pickler.dumps(9, ("s" * 70_000,), {}), payload.PlainArgs)
    local = pickler.dumps(1, (lambda x: x,), {})  # needs cloudpickle: by value
    assert not isinstance(local, bytes)
    args, _ = pickle.loads(bytes(local))
    assert args[0](3) == 3
    keyword = pickler.dumps(2, (1,), {"k": 2})
    assert pickle.loads(bytes(keyword)) == ((1,), {"k": 2})  # type: ignore[arg-type]
    with pytest.raises(ArgumentsTooLarge):
        payload.ArgsPickler(limit=100).dumps(3, ("x" * 1000,), {})
    calls = tuple(payload.Call(i, 0, a) for i, a in enumerate((plain, local, keyword)))
    batch = payload.Batch("b1", ("digest",), calls)
    read = payload.Batch.decode(bytes(batch.encode(key="b", secret=S)), key="b", secret=S)
    assert read.calls[0].arguments() == ((1, 2.5, "s", b"b", None, True), {})
    assert read.calls[1].arguments()[0][0](4) == 4
    assert read.calls[2].arguments() == ((1,), {"k": 2})


def test_batch_columns_that_do_not_match_are_refused() -> None:
    body = _chunks.pack(("b1", ["digest"], b"\0" * 16, b"\0" * 16, b"\0" * 8,
                         _chunks.Chunks([b"x"]), []))
    data = bytes(payload.dump_chunks("batch", body, key="b", secret=S))
    with pytest.raises(pickle.UnpicklingError):
        payload.Batch.decode(data, key="b", secret=S)
    body = _chunks.pack(("b1", ["digest"], b"\0" * 8, (5).to_bytes(8, "little"),
                         (1).to_bytes(8, "little"), _chunks.Chunks([b"x"]), []))
    data = bytes(payload.dump_chunks("batch", body, key="b", secret=S))
    with pytest.raises(pickle.UnpicklingError):  # a function index past the digests
        payload.Batch.decode(data, key="b", secret=S)
