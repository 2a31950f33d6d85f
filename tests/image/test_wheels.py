"""The wheelhouse download, without the network: a line per wheel, each wheel kept once it is
complete, and an index that does not answer (silent or refusing, on loopback) named within
seconds.  pip is pointed at a folder of tiny wheels built here, or at a loopback index."""

from __future__ import annotations

import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from starburst_executor.errors import ImageError
from starburst_executor.image import index, wheels

pytestmark = pytest.mark.timeout(120)
TARGET = wheels.Target("3.11", "x86_64")


def tiny_wheel(folder: Path, name: str, version: str) -> Path:
    """A valid pure-Python wheel of ``name==version`` holding one module."""
    dist = f"{name}-{version}.dist-info"
    entries = {
        f"{name}.py": b"VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in entries) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for entry, data in {**entries, f"{dist}/RECORD": record.encode()}.items():
            zf.writestr(entry, data)
    return path


@pytest.fixture
def pip_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """pip with no configuration but what a test sets through ``PIP_*`` variables."""
    import os

    for name in list(os.environ):
        if name.startswith("PIP_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    return monkeypatch


@pytest.fixture
def silent_index() -> Iterator[str]:
    """An index on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_line_per_wheel_and_nothing_downloaded_twice(
    pip_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    links = tmp_path / "links"
    links.mkdir()
    for name in ("alpha", "beta", "gamma"):
        tiny_wheel(links, name, "1.0")
    pip_env.setenv("PIP_NO_INDEX", "1")
    pip_env.setenv("PIP_FIND_LINKS", str(links))
    cache = tmp_path / "cache"
    lines: list[str] = []
    pins = [("alpha", "1.0"), ("beta", "1.0"), ("gamma", "1.0"), ("nowhere", "2.0")]
    found, missing = wheels.download_wheels(pins, TARGET, cache=cache, log=lines.append)
    assert set(found) == {("alpha", "1.0"), ("beta", "1.0"), ("gamma", "1.0")}
    assert missing == [("nowhere", "2.0")]
    assert lines[0].startswith("downloading 4 wheel(s) for cp311-x86_64 from local indexes")
    per_wheel = [line for line in lines if line.startswith("[")]
    assert len(per_wheel) == 4 and any("no wheel of nowhere==2.0" in line for line in per_wheel)
    # The pin that has no wheel did not make the others download again.
    for name in ("alpha", "beta", "gamma"):
        assert sum(f"{name}-1.0-py3-none-any.whl" in line for line in lines) == 1
    assert sorted(p.name for p in cache.iterdir()) == [
        "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "gamma-1.0-py3-none-any.whl"]

    # Gone from the index, kept in the cache: asked for no more, even with no index at all.
    for path in links.iterdir():
        path.unlink()
    pip_env.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{unused_port()}/simple")
    pip_env.delenv("PIP_NO_INDEX")
    lines.clear()
    found, missing = wheels.download_wheels(pins[:3], TARGET, cache=cache, log=lines.append)
    assert len(found) == 3 and missing == [] and lines == []


def test_a_silent_index_is_named_within_seconds(pip_env: pytest.MonkeyPatch, tmp_path: Path,
                                                silent_index: str) -> None:
    pip_env.setenv("PIP_INDEX_URL", silent_index)
    started = time.monotonic()
    with pytest.raises(ImageError) as info:
        wheels.download_wheels([("six", "1.16.0")], TARGET, cache=tmp_path, log=lambda _: None,
                               probe_timeout=2.0)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert f"the package index {silent_index} cannot be reached" in message
    assert "timed out" in message and "PIP_INDEX_URL" in message


def test_a_refusing_extra_index_and_a_proxy_to_nowhere_are_named(
    pip_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    links = tmp_path / "links"
    links.mkdir()
    pip_env.setenv("PIP_FIND_LINKS", str(links))
    refusing = f"http://127.0.0.1:{unused_port()}/simple"
    pip_env.setenv("PIP_INDEX_URL", f"file://{links}")
    pip_env.setenv("PIP_EXTRA_INDEX_URL", refusing)
    started = time.monotonic()
    with pytest.raises(ImageError, match=f"the package index {refusing} cannot be reached"):
        wheels.download_wheels([("six", "1.16.0")], TARGET, cache=tmp_path / "c",
                               log=lambda _: None)
    assert time.monotonic() - started < 15

    pip_env.delenv("PIP_EXTRA_INDEX_URL")
    pip_env.setenv("PIP_INDEX_URL", "http://user:secret@index.example/simple")
    proxy = f"http://127.0.0.1:{unused_port()}"
    pip_env.setenv("PIP_PROXY", proxy)
    with pytest.raises(ImageError) as info:
        wheels.download_wheels([("six", "1.16.0")], TARGET, cache=tmp_path / "c",
                               log=lambda _: None)
    message = str(info.value)
    assert "http://user:***@index.example/simple" in message and "secret" not in message
    assert f"through the proxy {proxy}" in message


def test_index_urls_follow_pips_precedence() -> None:
    assert index.index_urls({}) == [index.DEFAULT_INDEX]
    settings = {"global.index-url": "https://a/simple", "download.index-url": "https://b/simple",
                "global.extra-index-url": "file:///opt/x https://c/simple"}
    assert index.index_urls(settings) == ["https://b/simple", "https://c/simple"]
    assert index.index_urls({**settings, ":env:.index-url": "http://d/simple"})[0] == (
        "http://d/simple")
    assert index.index_urls({**settings, ":env:.no-index": "1"}) == []


def test_pips_network_failures_are_told_from_missing_wheels() -> None:
    assert index.network_failure(
        "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) "
        "after connection broken by 'NewConnectionError(...)': /simple/six/")
    assert not index.network_failure(
        "ERROR: Could not find a version that satisfies the requirement six==9 (from versions: "
        "none)\nERROR: No matching distribution found for six==9")
