"""The result reader: one LIST per look, the new parts fetched side by side, each read once."""

from __future__ import annotations

import pytest

from starburst_executor import _keys, payload
from starburst_executor.engine.results import ResultReader
from starburst_executor.errors import StoreError

from .fakes import SECRET, memory_store, remote_memory_store


@pytest.mark.parametrize("remote", [True, False], ids=["remote", "local"])
def test_new_parts_are_fetched_once_and_read_in_order(remote: bool) -> None:
    store = remote_memory_store() if remote else memory_store()
    for item in range(5):
        key = _keys.result_key("b000000001", 1, item)
        part = payload.ResultPart("b000000001", 1, "w00000",
                                  [payload.encode_value(item, item * item, 0.0, 0.0)])
        store.put(key, part.encode(key=key, secret=SECRET))
    reader = ResultReader(store, secret=SECRET)
    fresh = reader.look("b000000000")
    # Fetched side by side by the look from a remote store; one by one as read locally.
    assert len(fresh) == 5 and store.stats.requests.get("get", 0) == (5 if remote else 0)
    values = []
    for key in fresh:
        part = reader.read(key)
        assert isinstance(part, payload.ResultPart)
        values.append(payload.decode_result(part.records[0])[1])
    assert values == [0, 1, 4, 9, 16] and store.stats.requests["get"] == 5
    assert reader.look("b000000000") == []  # each part once


def test_a_part_that_cannot_be_fetched_is_an_error_of_its_own() -> None:
    store = memory_store()
    reader = ResultReader(store, secret=SECRET)
    assert isinstance(reader.read(_keys.result_key("b000000001", 1, 0)), StoreError)
