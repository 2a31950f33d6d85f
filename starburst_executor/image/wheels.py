"""The wheelhouse of a worker image, prepared on the host so the image build needs no network.

* :func:`package_wheel` writes a wheel of this package from its source files, byte for byte
  reproducible (fixed timestamps, sorted entries), whether it is installed or used from a checkout.
* :func:`worker_files` names the files of this package that run in the worker (the worker's
  import closure); :func:`worker_digest` hashes them for the tag.
* :func:`download_wheels` fetches the wheels of exact pins for the target platform with
  ``pip download``, one pin at a time (a few in parallel), into a cache that outlives builds; a
  line per wheel shows the progress, and an index that does not answer fails the download in
  seconds (:mod:`.index`).  A pin with no such wheel is built on the host when it is pure
  Python, and otherwise reported back, by name.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

from ..errors import ImageError
from . import index

__all__ = [
    "Target",
    "package_files",
    "worker_files",
    "worker_digest",
    "package_wheel",
    "download_wheels",
    "wheel_cache_dir",
    "normalize",
]

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_WORKER_MODULE = "worker.py"
DIST_NAME = "starburst-executor"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def normalize(name: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class Target:
    """The interpreter and platform wheels are chosen for."""

    python_minor: str  # "3.11"
    architecture: str  # "x86_64" or "arm64"
    glibc: tuple[int, int] = (2, 36)  # Debian bookworm, the official slim images' base

    @property
    def machine(self) -> str:
        return "aarch64" if self.architecture == "arm64" else "x86_64"

    @property
    def key(self) -> str:
        return f"cp{self.python_minor.replace('.', '')}-{self.machine}"

    def pip_args(self) -> list[str]:
        """``pip download`` options restricting wheels to this target."""
        nodot = self.python_minor.replace(".", "")
        args = ["--python-version", self.python_minor, "--implementation", "cp"]
        for abi in (f"cp{nodot}", "abi3", "none"):
            args += ["--abi", abi]
        major, minor = self.glibc
        platforms = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
        platforms += [f"manylinux2014_{self.machine}"]
        if self.machine == "x86_64":
            platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        for platform in platforms:
            args += ["--platform", platform]
        return args


def package_files() -> list[Path]:
    """The files of this package that go into its wheel: sources and package data, sorted."""
    files = []
    for path in sorted(_PACKAGE_DIR.rglob("*")):
        rel = path.relative_to(_PACKAGE_DIR)
        if "__pycache__" in rel.parts or path.is_dir() or path.suffix in (".pyc", ".pyo"):
            continue
        files.append(path)
    return files


def worker_files(root: Path = _PACKAGE_DIR) -> list[Path]:
    """The files of the package at ``root`` that run in the worker, sorted.

    That is ``worker.py`` and every module it imports, directly or not (relative imports and
    ``starburst_executor.*`` ones, at module level or inside functions); a subpackage it reaches
    counts whole, since its registries import modules by name.  The package's ``__init__.py``
    runs in the worker, so it counts, but what it imports lazily for the client does not.  The
    Dockerfile template is part of the recipe's digest, not of this list.
    """
    found: set[Path] = {root / "__init__.py"}
    todo = [root / _WORKER_MODULE]
    while todo:
        path = todo.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        if path.parent != root:  # in a subpackage: take all of it
            package = root / path.relative_to(root).parts[0]
            todo.extend(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
        todo.extend(_imported(path, root))
    return sorted(p for p in found if p.is_file())


def _imported(path: Path, root: Path) -> list[Path]:
    """The files of the package at ``root`` that the module at ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = path.parent
    names: list[tuple[Path, str]] = []  # (folder to resolve in, dotted name)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.parent
            elif (node.module or "").split(".")[0] == root.name:
                base = root.parent
            else:
                continue
            module = node.module or ""
            names.append((base, module))
            names.extend((base, f"{module}.{alias.name}".strip(".")) for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend((root.parent, alias.name) for alias in node.names
                         if alias.name.split(".")[0] == root.name)
    files = []
    for base, dotted in names:
        target = base.joinpath(*dotted.split(".")) if dotted else base
        for candidate in (target.with_suffix(".py"), target / "__init__.py"):
            if candidate.is_file() and root in candidate.parents:
                files.append(candidate)
    return files


def worker_digest(root: Path = _PACKAGE_DIR) -> str:
    """sha256 over :func:`worker_files` (names and contents), so an edited worker whose version
    number did not change still gets a new image tag, and an edited command line does not."""
    digest = hashlib.sha256()
    for path in worker_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def package_version() -> str:
    """This package's version: installed metadata, else the checkout's pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        pass
    pyproject = _PACKAGE_DIR.parent / "pyproject.toml"
    if pyproject.exists():
        match = re.search(r'(?m)^version\s*=\s*"([^"]+)"', pyproject.read_text())
        if match:
            return match.group(1)
    return "0+unknown"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def package_wheel(dest: Path, version: str | None = None) -> Path:
    """Write a pure-Python wheel of this package into ``dest``; return its path.

    Only the worker's side matters in the image, so the wheel declares no dependencies (the
    image's pins provide them) and no console scripts.
    """
    version = version or package_version()
    dist_info = f"starburst_executor-{version}.dist-info"
    entries: list[tuple[str, bytes]] = []
    for path in package_files():
        entries.append(("starburst_executor/" + path.relative_to(_PACKAGE_DIR).as_posix(), path.read_bytes()))
    metadata = (
        f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {version}\nRequires-Python: >=3.10\n"
        "Summary: starburst-executor worker (built for a worker image)\n"
    ).encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: starburst-executor\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries.append((f"{dist_info}/METADATA", metadata))
    entries.append((f"{dist_info}/WHEEL", wheel))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"starburst_executor-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def wheel_cache_dir(target: Target) -> Path:
    """Where downloaded wheels for ``target`` are kept between builds."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "starburst" / "wheels" / target.key


_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def _cached(directory: Path) -> dict[tuple[str, str], Path]:
    found: dict[tuple[str, str], Path] = {}
    if directory.is_dir():
        for path in directory.glob("*.whl"):
            match = _WHEEL_NAME.match(path.name)
            if match:
                found[(normalize(match.group("name")), match.group("version"))] = path
    return found


_NOT_FOUND = re.compile(r"No matching distribution found for|satisfies the requirement")
_PARALLEL = 8


def _run_pip(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-lines:])


def download_wheels(
    pins: Iterable[tuple[str, str]],
    target: Target,
    *,
    cache: Path | None = None,
    log: Callable[[str], None] = print,
    timeout: float = 900.0,
    probe_timeout: float = index.PROBE_TIMEOUT,
) -> tuple[dict[tuple[str, str], Path], list[tuple[str, str]]]:
    """Make sure a wheel for each ``(name, version)`` pin is in the cache.

    Returns (wheel of each pin found, pins with no wheel for ``target``).  Cached wheels are not
    asked for again, so an unchanged environment costs no index request.  Each pin is downloaded
    on its own (a few at a time) and kept as soon as it is complete, with a line to ``log``; so
    a failure costs only the pins not yet done.  ``timeout`` bounds each pin's download.

    Raises:
        ImageError: a package index pip is configured with does not answer within
            ``probe_timeout`` seconds, or stops answering during the download.
        RuntimeError: pip failed for another reason.
    """
    cache = cache or wheel_cache_dir(target)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = {(normalize(name), version) for name, version in pins}
    todo = sorted(wanted - set(_cached(cache)))
    missing: list[tuple[str, str]] = []
    if todo:
        settings = index.pip_settings()
        urls = index.index_urls(settings)
        index.check_indexes(urls, settings, probe_timeout)
        where = ", ".join(index.redact(u) for u in urls) or "local indexes"
        log(f"downloading {len(todo)} wheel(s) for {target.key} from {where} into {cache}")
        missing = _download_each(todo, target, cache, log, timeout, where)
    still_missing = []
    for name, version in missing:
        wheel = _build_pure_wheel(name, version, cache, timeout)
        if wheel is None:
            still_missing.append((name, version))
        else:
            log(f"built pure-Python wheel {wheel.name} on the host (no wheel on the index)")
    have = _cached(cache)
    found = {pin: have[pin] for pin in wanted if pin in have}
    return found, sorted(still_missing)


def _download_each(
    todo: list[tuple[str, str]], target: Target, cache: Path, log: Callable[[str], None],
    timeout: float, where: str,
) -> list[tuple[str, str]]:
    """Download each pin of ``todo`` into ``cache``, a line each; return those with no wheel."""
    missing: list[tuple[str, str]] = []
    done = 0
    futures: dict[Future[tuple[Path | None, subprocess.CompletedProcess[str]]], tuple[str, str]] = {}
    pool = ThreadPoolExecutor(max_workers=min(_PARALLEL, len(todo)))
    try:
        futures.update({pool.submit(_download_one, pin, target, cache, timeout): pin
                        for pin in todo})
        for future in as_completed(futures):
            pin, (wheel, proc) = futures[future], future.result()
            done += 1
            if wheel is not None:
                log(f"[{done}/{len(todo)}] {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB)")
            elif index.network_failure(proc.stdout + proc.stderr):
                raise ImageError(
                    f"downloading {pin[0]}=={pin[1]} from {where} failed for the network "
                    f"({done - 1} wheel(s) of {len(todo)} were downloaded and are kept in "
                    f"{cache}; run again to get the rest):\n{_tail(proc, 6)}"
                )
            elif _NOT_FOUND.search(proc.stdout + proc.stderr):
                log(f"[{done}/{len(todo)}] no wheel of {pin[0]}=={pin[1]} for {target.key}")
                missing.append(pin)
            else:
                raise RuntimeError(f"pip download {pin[0]}=={pin[1]} failed:\n{_tail(proc)}")
    finally:
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
    return missing


def _download_one(
    pin: tuple[str, str], target: Target, cache: Path, timeout: float
) -> tuple[Path | None, subprocess.CompletedProcess[str]]:
    """Download the wheel of ``pin`` next to ``cache``, then move it in: an interrupted download
    leaves no partial wheel to be taken for a cached one."""
    with tempfile.TemporaryDirectory(prefix=".partial-", dir=cache) as tmp:
        try:
            proc = _run_pip(
                ["download", "--no-deps", "--only-binary=:all:", "--dest", tmp,
                 *index.PIP_NETWORK_ARGS, *target.pip_args(), f"{pin[0]}=={pin[1]}"],
                timeout,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pip download {pin[0]}=={pin[1]} took over {timeout:g} s") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            return None, proc
        dest = cache / wheels[0].name
        os.replace(wheels[0], dest)
        return dest, proc


def _build_pure_wheel(name: str, version: str, cache: Path, timeout: float) -> Path | None:
    """Build ``name==version`` from its sdist on the host; keep it only if it is pure Python,
    since a compiled wheel built here would not match the target's platform."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = _run_pip(["wheel", "--no-deps", "--wheel-dir", tmp, *index.PIP_NETWORK_ARGS,
                         f"{name}=={version}"], timeout)
        if proc.returncode != 0:
            return None
        for path in Path(tmp).glob("*.whl"):
            if path.name.endswith("-none-any.whl"):
                dest = cache / path.name
                os.replace(path, dest)
                return dest
    return None


def local_wheel(source: Path, dest: Path, timeout: float = 900.0) -> Path:
    """Build a wheel of a distribution installed from the local directory ``source``."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = _run_pip(["wheel", "--no-deps", "--wheel-dir", tmp, str(source)], timeout)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
            raise RuntimeError(f"cannot build a wheel of {source}:\n{tail}")
        wheels = list(Path(tmp).glob("*.whl"))
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / wheels[0].name
        os.replace(wheels[0], out)
        return out


def pip_wheel(target: Target, log: Callable[[str], None], timeout: float = 900.0) -> Path:
    """A pip wheel to run the installs in the image with (the base image needs no pip):
    the host's pip version when it has one, else the newest."""
    from importlib import metadata

    try:
        pins = [("pip", metadata.version("pip"))]
    except metadata.PackageNotFoundError:
        pins = []
    if pins:
        found, _ = download_wheels(pins, target, log=log, timeout=timeout)
        if found:
            return next(iter(found.values()))
    cache = wheel_cache_dir(target)
    proc = _run_pip(
        ["download", "--no-deps", "--only-binary=:all:", "--dest", str(cache),
         *index.PIP_NETWORK_ARGS, *target.pip_args(), "pip"],
        timeout,
    )
    wheels = sorted(cache.glob("pip-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RuntimeError("cannot download a pip wheel for the image: " + proc.stderr[-500:])
    return wheels[-1]
