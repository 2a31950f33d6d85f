"""Build the worker image of a recipe and push it: what ``starburst build`` and ``auto_build`` run.

::

    ImageRecipe.tag()              sha256 of everything that goes in (see :mod:`.recipe`)
            |
    registry has the tag? ------- yes --> done (one HEAD request, no daemon needed)
            | no
    wheelhouse on the host         the index answers? (:mod:`.index`); pip download per pin for
            |                      the target platform (cached), a wheel of this package
            |                      written from its sources (:mod:`.wheels`)
    docker build (no network)      base -> venv with the pins -> worker layer (:mod:`.daemon`)
            |
    docker push to ECR             credentials from ecr.get_authorization_token (:mod:`.registry`)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError, ImageError
from . import daemon, index, registry as registries, wheels
from .recipe import Environment, ImageRecipe, capture_environment, default_base_image

__all__ = ["BuildResult", "ensure_image", "build_image", "DEFAULT_REPOSITORY"]

DEFAULT_REPOSITORY = "starburst-worker"


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What :func:`build_image` did.

    Attributes:
        uri: the image, ``<registry>/<repository>:<tag>``.
        tag: the content hash tag.
        built: false when the registry (or the local daemon, ``push=False``) had it already.
        pushed: whether it was pushed.
        seconds: wall time of the whole call.
        size: the image's size in bytes (0 when nothing was built).
        packages_size: bytes of the layer with the client's packages.
        worker_size: bytes of the layers over the base and the packages (the worker itself).
    """

    uri: str
    tag: str
    built: bool
    pushed: bool
    seconds: float
    size: int = 0
    packages_size: int = 0
    worker_size: int = 0


def ensure_image(config: Config, *, log: Callable[[str], None] = print, **options: Any) -> str:
    """Make sure the worker image of the current environment is in ECR; return its URI.

    Nothing is built or pushed when ECR already has the tag.  ``options`` are those of
    :func:`build_image`.

    Raises:
        ConfigError: docker SDK or AWS credentials missing, a bad option.
        ImageError: no Docker daemon, registry unreachable, a package without a wheel, a failed
            build or push; the message says what to do.
    """
    return build_image(config, log=log, **options).uri


def build_image(
    config: Config,
    *,
    log: Callable[[str], None] = print,
    repository: str = DEFAULT_REPOSITORY,
    base_image: str | None = None,
    requirements: Sequence[str] = (),
    apt_packages: Sequence[str] = (),
    dockerfile: str | os.PathLike[str] | None = None,
    allow_index: bool = False,
    environment: Environment | None = None,
    push: bool = True,
    registry: str | None = None,
    force: bool = False,
    check_python: bool = True,
    client: Any = None,
    ecr: Any = None,
) -> BuildResult:
    """Build (if needed) and push the worker image for ``config.architecture``.

    Args:
        config: settings; ``architecture`` and ``region`` are used.
        log: receives progress lines.
        repository: ECR repository name (created, tagged, when missing).
        base_image: defaults to :func:`default_base_image` of the client's Python minor.
        requirements: extra pip requirements installed over the environment (pin them: the tag
            hashes the strings, not what they resolve to).
        apt_packages: Debian packages installed in the image (the build then needs network).
        dockerfile: a Dockerfile of your own, built first and used as the base image.
        allow_index: install packages that have no wheel for the target from the package index
            during the build, instead of failing.
        environment: what to install; defaults to :func:`capture_environment`.
        push: false builds for the local daemon only (``backend="docker"``) and skips when the
            daemon has the tag.
        registry: push to this registry host instead of the one ECR names (a stand-in
            registry in tests); defaults to ``$STARBURST_REGISTRY``.
        force: build and push even when the tag exists.
        check_python: refuse a base image whose Python minor differs from the client's.
        client: a ``docker.DockerClient`` to use.
        ecr: a boto3 ECR client to use.
    """
    started = time.monotonic()
    user_dockerfile = Path(dockerfile) if dockerfile is not None else None
    recipe = _recipe(config, environment or capture_environment(), base_image, requirements,
                     apt_packages, user_dockerfile, allow_index)
    tag = recipe.tag()
    target: registries.Registry | None = None
    uri = f"{repository}:{tag}"
    if push:
        host = registry or os.environ.get("STARBURST_REGISTRY")
        target = registries.ecr_target(config, repository, host, ecr)
        uri = f"{target.repository_uri}:{tag}"
        if not force and registries.registry_has(target, tag):
            log(f"{uri} is in the registry already: nothing to build")
            return BuildResult(uri, tag, built=False, pushed=False, seconds=time.monotonic() - started)
    client = client or daemon.open_daemon()
    if not push and not force and daemon.local_image(client, uri) is not None:
        log(f"{uri} is in the local Docker daemon already: nothing to build")
        return BuildResult(uri, tag, built=False, pushed=False, seconds=time.monotonic() - started)
    size, packages_size, worker_size = _build(client, recipe, uri, user_dockerfile,
                                              check_python, log)
    pushed = False
    if target is not None:
        push_started = time.monotonic()
        daemon.stream_push(client, target, tag, log)
        pushed = True
        log(f"pushed {uri} in {time.monotonic() - push_started:.1f} s")
    return BuildResult(
        uri, tag, built=True, pushed=pushed, seconds=time.monotonic() - started,
        size=size, packages_size=packages_size, worker_size=worker_size,
    )


def _recipe(
    config: Config, environment: Environment, base_image: str | None,
    requirements: Sequence[str], apt_packages: Sequence[str], user_dockerfile: Path | None,
    allow_index: bool,
) -> ImageRecipe:
    """The recipe of :func:`build_image`'s arguments, checked."""
    if user_dockerfile is not None and not user_dockerfile.is_file():
        raise ConfigError(f"dockerfile={str(user_dockerfile)!r} is not a file")
    if config.architecture not in daemon.PLATFORMS:
        raise ConfigError(f"architecture={config.architecture!r} is not one of x86_64, arm64")
    return ImageRecipe(
        environment=environment,
        base_image=base_image or default_base_image(environment.python_minor),
        architecture=config.architecture,
        requirements=tuple(requirements),
        apt_packages=tuple(apt_packages),
        dockerfile=user_dockerfile.read_text() if user_dockerfile else None,
        allow_index=allow_index,
    )


def _build(
    client: Any, recipe: ImageRecipe, uri: str, user_dockerfile: Path | None,
    check_python: bool, log: Callable[[str], None],
) -> tuple[int, int, int]:
    """Build ``recipe`` as ``uri`` on the daemon; return its sizes (see :func:`daemon.sizes`)."""
    log(f"building {uri} for {recipe.architecture} over {recipe.base_image}")
    platform = daemon.PLATFORMS[recipe.architecture]
    base = recipe.base_image
    if user_dockerfile is not None:
        base = daemon.build_user_base(client, user_dockerfile, recipe, platform, log)
    daemon.check_base(client, base, recipe, platform, check_python, log)
    with _build_context(recipe, log) as (context, index_pins, extras):
        (context / "Dockerfile").write_text(recipe.render(index_pins, extras))
        build_started = time.monotonic()
        daemon.stream_build(
            client,
            log,
            path=str(context),
            tag=uri,
            buildargs={"BASE_IMAGE": base},
            platform=platform,
            network_mode="host" if (index_pins or recipe.apt_packages) else "none",
        )
        build_seconds = time.monotonic() - build_started
    size, packages_size, worker_size = daemon.sizes(client, uri)
    log(
        f"built {uri} in {build_seconds:.1f} s: {_mb(size)} in all, packages {_mb(packages_size)}, "
        f"worker layers {_mb(worker_size)}"
    )
    return size, packages_size, worker_size


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# --- the build context ------------------------------------------------------------------------

@contextmanager
def _build_context(
    recipe: ImageRecipe, log: Callable[[str], None]
) -> Iterator[tuple[Path, list[tuple[str, str]], bool]]:
    """A directory with the wheelhouse and the worker wheel; yields (it, pins to install from the
    index during the build, whether extra requirements are in the wheelhouse)."""
    env = recipe.environment
    target = wheels.Target(env.python_minor, recipe.architecture)
    with tempfile.TemporaryDirectory(prefix="starburst-build-") as tmp:
        context = Path(tmp)
        wheelhouse = context / "wheelhouse"
        (wheelhouse / "tools").mkdir(parents=True)
        try:
            found, missing = wheels.download_wheels(env.pins, target, log=log)
            pip = wheels.pip_wheel(target, log)
        except RuntimeError as exc:
            raise ImageError(f"cannot prepare the wheelhouse: {exc}") from None
        if missing and not recipe.allow_index:
            names = ", ".join(f"{n}=={v}" for n, v in missing)
            raise ImageError(
                f"no wheel for {target.key} (Linux {recipe.architecture}, Python "
                f"{env.python_minor}) of: {names}. Upgrade or pin a version that ships one, "
                "exclude the package, or pass allow_index=True (`starburst build --allow-index`) "
                "to install it from the package index during the build."
            )
        if missing:
            log("installing from the index during the build: " + ", ".join(n for n, _ in missing))
        for path in found.values():
            _link(path, wheelhouse / path.name)
        _link(pip, wheelhouse / "tools" / "pip.whl")
        lines = [f"{name}=={version}" for name, version in sorted(found)]
        for name, version, directory in env.local:
            try:
                wheel = wheels.local_wheel(Path(directory), wheelhouse)
            except RuntimeError as exc:
                raise ImageError(f"cannot build {name} from {directory}: {exc}") from None
            lines.append(f"{name}=={version}")
            log(f"built {wheel.name} from {directory}")
        (wheelhouse / "requirements.txt").write_text("".join(line + "\n" for line in lines))
        extras = bool(recipe.requirements)
        if extras:
            _download_extras(recipe.requirements, target, wheelhouse, log)
            (wheelhouse / "extra.txt").write_text("".join(r + "\n" for r in recipe.requirements))
        wheels.package_wheel(context / "worker", env.package_version or None)
        yield context, missing, extras


def _download_extras(
    requirements: Sequence[str], target: wheels.Target, dest: Path, log: Callable[[str], None]
) -> None:
    settings = index.pip_settings()
    index.check_indexes(index.index_urls(settings), settings)
    log(f"downloading extra requirements: {', '.join(requirements)}")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "download",
         "--only-binary=:all:", "--dest", str(dest), *index.PIP_NETWORK_ARGS,
         *target.pip_args(), *requirements],
        capture_output=True, text=True, timeout=900, check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise ImageError(f"cannot download wheels of requirements {list(requirements)}:\n{tail}")


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
