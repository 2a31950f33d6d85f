from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from starburst_executor.errors import StoreError
from starburst_executor.storage.local import LocalStore

from ..contracts.store_contract import StoreContract


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LocalStore]:
        s = LocalStore(tmp_path / "session")
        yield s
        s.close()

    def test_rejects_escaping_keys(self, store: LocalStore) -> None:
        with pytest.raises(StoreError):
            store.put("../outside", b"x")

    def test_no_partial_files_are_listed(self, store: LocalStore, tmp_path: Path) -> None:
        (tmp_path / "session" / "r").mkdir(parents=True)
        (tmp_path / "session" / "r" / ".tmp-abc").write_bytes(b"half")
        assert store.list("r/") == []
