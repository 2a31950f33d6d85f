"""The local store's root is private: created 0700, or checked, or refused with the path."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from starburst_executor import FargateExecutor
from starburst_executor.errors import ConfigError
from starburst_executor.storage.private import private_directory, user_store_root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_created_atomically_with_mode_0700(tmp_path: Path) -> None:
    root = private_directory(tmp_path / "store")
    assert _mode(root) == 0o700
    assert private_directory(root) == root  # ours and private: used again


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "store"
    planted.mkdir()
    planted.chmod(0o777)
    with pytest.raises(ConfigError, match=rf"{planted}.*others may write it \(mode 777\)"):
        private_directory(planted)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a directory to another user needs root")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "store"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(ConfigError, match=rf"{theirs}.*another user \(uid 65534\)"):
        private_directory(theirs)


def test_a_symlink_is_refused_even_to_a_private_directory(tmp_path: Path) -> None:
    target = private_directory(tmp_path / "elsewhere")
    link = tmp_path / "store"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match=rf"{link}.*symlink"):
        private_directory(link)


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        private_directory(tmp_path / "store")


def test_per_user_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    assert user_store_root({"XDG_RUNTIME_DIR": str(runtime)}) == runtime / "starburst"
    # A runtime directory others may write is no private place: the temp path is used.
    runtime.chmod(0o777)
    expected = tmp_path / "tmp" / f"starburst-{os.getuid()}"
    assert user_store_root({"XDG_RUNTIME_DIR": str(runtime)}) == expected
    assert user_store_root({}) == expected and _mode(expected) == 0o700


def test_the_local_backend_refuses_a_planted_store_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    planted = tmp_path / f"starburst-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)  # made first by someone else, for everyone
    with pytest.raises(ConfigError, match=rf"refusing the local store directory {planted}"):
        FargateExecutor(backend="local", max_workers=1)
    planted.rmdir()
    with FargateExecutor(backend="local", max_workers=1) as ex:
        assert ex.submit(pow, 2, 3).result(timeout=60) == 8
    assert _mode(planted) == 0o700
