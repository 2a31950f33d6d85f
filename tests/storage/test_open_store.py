from __future__ import annotations

from pathlib import Path

from starburst_executor.storage import is_remote, open_store
from starburst_executor.storage.memory import MemoryStore
from starburst_executor.storage.s3 import S3Store


def test_only_s3_is_remote(tmp_path: Path) -> None:
    assert not is_remote(open_store(tmp_path.as_uri()))
    assert not is_remote(MemoryStore("is-remote"))
    assert is_remote(S3Store.from_url("s3://bucket/starburst/sessions/x?region=us-east-1"))
