from __future__ import annotations

import itertools

import pytest

from starburst_executor.storage.memory import MemoryStore

from ..contracts.store_contract import StoreContract

_names = itertools.count()


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore(f"test-{next(_names)}")
