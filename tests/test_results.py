"""_results: result parts in columns, small immutable results in one list, and what breaks."""

from __future__ import annotations

import pickle

import pytest

from starburst_executor import _chunks, _results
from starburst_executor._frame import dump_chunks
from starburst_executor._results import ResultPart, decode_result, encode_exception, encode_value
from starburst_executor.errors import ResultTooLarge

SECRET = b"s" * 32
KEY = "results/b000000001.1.00000"


def _round_trip(records: list[_results.ResultRecord]) -> ResultPart:
    data = bytes(ResultPart("b000000001", 1, "w1", records, True).encode(key=KEY, secret=SECRET))
    return ResultPart.decode(data, key=KEY, secret=SECRET)


def test_a_part_of_every_kind_of_result_round_trips_in_order() -> None:
    values: list[object] = [7, "text", None, 2.5, True, b"raw", [1, 2], {"k": (3,)}]
    records = [encode_value(i, v, 10.0 + i, 11.0 + i) for i, v in enumerate(values)]
    records.append(encode_exception(len(values), KeyError("gone"), 1.0, 2.0))
    records[0].output = (("stdout", "seven\n"),)
    part = _round_trip(records)
    assert [r.item_id for r in part.records] == list(range(len(values) + 1))
    assert [decode_result(r) for r in part.records[:-1]] == [(True, v) for v in values]
    assert [(r.started, r.finished) for r in part.records[:2]] == [(10.0, 11.0), (11.0, 12.0)]
    assert part.records[0].output == (("stdout", "seven\n"),)
    assert [r.atom for r in part.records[:5]] == [True] * 5  # numbers, short strings, None
    assert not part.records[6].atom  # a list: pickled on its own, may be mutable
    ok, error = decode_result(part.records[-1])
    assert not ok and isinstance(error, KeyError) and part.records[-1].error is not None
    assert part.final and part.worker_id == "w1" and part.attempt == 1


def test_small_results_still_respect_a_small_max_result_size() -> None:
    record = encode_value(3, "x" * 1000, 0.0, 0.0, limit=100)
    ok, error = decode_result(record)
    assert not ok and isinstance(error, ResultTooLarge)
    assert decode_result(encode_value(4, "x" * 10, 0.0, 0.0, limit=100)) == (True, "x" * 10)


def test_large_values_stay_out_of_band_and_small_ones_are_joined() -> None:
    big = b"v" * (1 << 20)
    records = [encode_value(i, [i], 0.0, 0.0) for i in range(100)]
    records.append(encode_value(100, bytearray(big), 0.0, 0.0))
    framed = ResultPart("b1", 1, "w1", records, True).encode(key=KEY, secret=SECRET)
    assert any(part is not None and len(part) >= len(big) for part in framed.parts)
    assert len(framed.parts) < 20  # not a part per record
    read = ResultPart.decode(bytes(framed), key=KEY, secret=SECRET)
    assert decode_result(read.records[-1]) == (True, bytearray(big))
    assert [decode_result(r)[1] for r in read.records[:3]] == [[0], [1], [2]]


@pytest.mark.parametrize("columns", [
    # eight records of ids, but one flag: the columns disagree
    ("b1", 1, "w1", True, b"\0" * 64, b"\1", [], b"\0" * 16, ["int"], {}, {}, b"\0" * 8,
     _chunks.Chunks([b""])),
    # one atom flag, no atom
    ("b1", 1, "w1", True, b"\0" * 8, b"\2", [], b"\0" * 16, ["int"], {}, {}, b"\0" * 8,
     _chunks.Chunks([b""])),
    # sizes that run past the values
    ("b1", 1, "w1", True, b"\0" * 8, b"\1", [], b"\0" * 16, ["int"], {}, {},
     (99).to_bytes(8, "little"), _chunks.Chunks([b"xy"])),
])
def test_columns_that_do_not_match_are_refused(columns: tuple[object, ...]) -> None:
    data = bytes(dump_chunks("results", _chunks.pack(columns), key=KEY, secret=SECRET))
    with pytest.raises(pickle.UnpicklingError):
        ResultPart.decode(data, key=KEY, secret=SECRET)
