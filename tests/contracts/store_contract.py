"""The behaviour every ObjectStore promises.  A backend's test module subclasses
``StoreContract`` and provides a ``store`` fixture (an empty store)."""

from __future__ import annotations

import threading

import pytest

from starburst_executor._chunks import Chunks
from starburst_executor.errors import ObjectNotFound
from starburst_executor.storage import ObjectStore, open_store


class StoreContract:
    def test_is_an_object_store(self, store: ObjectStore) -> None:
        assert isinstance(store, ObjectStore)

    def test_put_then_get_round_trips_bytes(self, store: ObjectStore) -> None:
        store.put("a/b", b"\x00hello\xff")
        assert store.get("a/b") == b"\x00hello\xff"

    def test_put_overwrites(self, store: ObjectStore) -> None:
        store.put("k", b"one")
        store.put("k", b"two")
        assert store.get("k") == b"two"

    def test_empty_object(self, store: ObjectStore) -> None:
        store.put("empty", b"")
        assert store.get("empty") == b""

    def test_missing_key_raises_object_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFound) as info:
            store.get("nope/missing")
        assert "nope/missing" in str(info.value)
        assert isinstance(info.value, KeyError)

    def test_list_is_sorted_and_filtered_by_prefix(self, store: ObjectStore) -> None:
        for key in ["results/b2.1.00000", "results/b1.1.00001", "results/b1.1.00000", "batches/b1"]:
            store.put(key, b"x")
        assert store.list("results/") == [
            "results/b1.1.00000", "results/b1.1.00001", "results/b2.1.00000"]
        assert store.list("results/b1.") == ["results/b1.1.00000", "results/b1.1.00001"]
        assert store.list("nothing/") == []

    def test_list_start_after(self, store: ObjectStore) -> None:
        for i in range(5):
            store.put(f"r/{i}", b"x")
        assert store.list("r/", start_after="r/2") == ["r/3", "r/4"]
        assert store.list("r/", start_after="r/4") == []

    def test_list_nested_keys(self, store: ObjectStore) -> None:
        store.put("assign/w1/000000", b"{}")
        store.put("assign/w1/000001", b"{}")
        store.put("assign/w2/000000", b"{}")
        assert store.list("assign/w1/") == ["assign/w1/000000", "assign/w1/000001"]
        assert store.list("assign/") == [
            "assign/w1/000000", "assign/w1/000001", "assign/w2/000000"]

    def test_delete_prefix(self, store: ObjectStore) -> None:
        store.put("a/1", b"x")
        store.put("a/2", b"x")
        store.put("b/1", b"x")
        store.delete_prefix("a/")
        assert store.list("a/") == []
        assert store.get("b/1") == b"x"

    def test_large_object(self, store: ObjectStore) -> None:
        data = bytes(range(256)) * (24 * 1024 * 4)  # 24 MiB: multipart territory for S3
        store.put("big", data)
        assert store.get("big") == data

    def test_put_chunks_stores_their_concatenation(self, store: ObjectStore) -> None:
        parts = [b"head", bytearray(b"-mid-"), memoryview(b"tail"), b""]
        store.put("chunked", Chunks(parts))
        assert store.get("chunked") == b"head-mid-tail"
        before = store.stats.bytes_out
        store.put("chunked", Chunks([b"x"]))  # overwrites, counted by size
        assert store.get("chunked") == b"x"
        assert store.stats.bytes_out == before + 1

    def test_large_chunked_object(self, store: ObjectStore) -> None:
        # 24 MiB in uneven chunks: S3 uploads it in parts read across chunk boundaries.
        parts = [bytes([i]) * (3 * 1024 * 1024 + 7 * i) for i in range(8)]
        store.put("big-chunked", Chunks(parts))
        assert store.get("big-chunked") == b"".join(parts)

    def test_url_opens_the_same_store(self, store: ObjectStore) -> None:
        store.put("shared", b"seen")
        other = open_store(store.url)
        try:
            assert other.get("shared") == b"seen"
        finally:
            other.close()

    def test_concurrent_puts_and_lists(self, store: ObjectStore) -> None:
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(20):
                    store.put(f"c/{n}-{i:02d}", b"v" * 100)
                    store.list("c/")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        assert len(store.list("c/")) == 80

    def test_put_if_absent_stores_once(self, store: ObjectStore) -> None:
        assert store.put_if_absent("claims/b1.1", b"first") is True
        assert store.put_if_absent("claims/b1.1", b"second") is False
        assert store.get("claims/b1.1") == b"first"
        assert store.list("claims/") == ["claims/b1.1"]
        store.put("claims/b2.1", b"plain")
        assert store.put_if_absent("claims/b2.1", b"late") is False
        assert store.get("claims/b2.1") == b"plain"

    def test_put_if_absent_has_exactly_one_winner_among_racers(self, store: ObjectStore) -> None:
        start = threading.Barrier(6)
        won: list[int] = []
        errors: list[BaseException] = []

        def racer(n: int) -> None:
            try:
                start.wait(timeout=30)
                if store.put_if_absent("claims/race", str(n).encode()):
                    won.append(n)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=racer, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        assert len(won) == 1
        assert store.get("claims/race") == str(won[0]).encode()

    def test_stats_count_requests(self, store: ObjectStore) -> None:
        before = sum(store.stats.requests.values())
        store.put("s", b"abc")
        store.get("s")
        store.list("s")
        assert sum(store.stats.requests.values()) >= before + 3
        assert store.stats.bytes_out >= 3 and store.stats.bytes_in >= 3
