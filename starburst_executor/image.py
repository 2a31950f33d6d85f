"""The worker image: the client's environment, exactly, in a container that Fargate can run.

::

    capture_environment()          Python minor, every installed distribution pinned, this package
            |
    ImageRecipe.tag()              sha256 of everything that goes in -> "py3.11-x86_64-<hash>"
            |
    registry has the tag? ------- yes --> done (one HEAD request, no daemon needed)
            | no
    wheelhouse on the host         pip download for the target platform (cached), a wheel of
            |                      this package written from its sources
    docker build (no network)      base -> venv with the pins -> worker layer
            |
    docker push to ECR             credentials from ecr.get_authorization_token

The user's own modules that are not installed travel by value through cloudpickle, not in the
image.  :func:`ensure_image` is what ``starburst build`` and ``auto_build=True`` call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from . import _image_registry, _image_wheels
from .config import Config
from .errors import ConfigError, ImageError

__all__ = [
    "ImageError",
    "Environment",
    "ImageRecipe",
    "BuildResult",
    "capture_environment",
    "default_base_image",
    "ensure_image",
    "build_image",
    "docker_client",
    "DEFAULT_REPOSITORY",
]

DEFAULT_REPOSITORY = "starburst-worker"
_TEMPLATE = Path(__file__).resolve().parent / "worker_image" / "Dockerfile.template"
_RECIPE_VERSION = 1
_PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
_PUSH_TICKS = frozenset({"Preparing", "Waiting", "Pushing"})
_DOCKER_ARCH = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}


@dataclasses.dataclass(frozen=True)
class Environment:
    """What of the client's Python environment goes into the image.

    Attributes:
        python_version: the client's full version (``"3.11.7"``); only the minor enters the tag,
            since pickles travel between patch releases.
        pins: every installed distribution as ``(normalized name, exact version)``, sorted,
            except this package and ``local`` ones.
        local: distributions installed from a local directory (``pip install -e .``) as
            ``(name, version, directory)``: wheels of them are built from that directory.
        package_version: this package's version.
        package_digest: sha256 of this package's files (an edited checkout gets a new tag).
    """

    python_version: str
    pins: tuple[tuple[str, str], ...]
    local: tuple[tuple[str, str, str], ...] = ()
    package_version: str = ""
    package_digest: str = ""

    @property
    def python_minor(self) -> str:
        return ".".join(self.python_version.split(".")[:2])

    def replace_pin(self, name: str, version: str) -> Environment:
        """A copy with ``name`` pinned at ``version`` (added if absent)."""
        norm = _image_wheels.normalize(name)
        pins = dict(self.pins)
        pins[norm] = version
        return dataclasses.replace(self, pins=tuple(sorted(pins.items())))


def capture_environment(
    distributions: Iterable[importlib.metadata.Distribution] | None = None,
    *,
    python_version: str | None = None,
    exclude: Iterable[str] = (),
) -> Environment:
    """Read the running interpreter's environment (or ``distributions``) into an Environment.

    Where a name is installed twice, the copy first on ``sys.path`` wins, as it does for import.
    """
    dists = importlib.metadata.distributions() if distributions is None else distributions
    skip = {_image_wheels.normalize(n) for n in exclude} | {_image_wheels.DIST_NAME}
    pins: dict[str, str] = {}
    local: dict[str, tuple[str, str, str]] = {}
    for dist in dists:
        name = dist.metadata["Name"]
        if not name:
            continue
        norm = _image_wheels.normalize(name)
        if norm in skip or norm in pins or norm in local:
            continue
        directory = _local_directory(dist)
        if directory is not None:
            local[norm] = (norm, dist.version, directory)
        else:
            pins[norm] = dist.version
    return Environment(
        python_version=python_version or "%d.%d.%d" % sys.version_info[:3],
        pins=tuple(sorted(pins.items())),
        local=tuple(sorted(local.values())),
        package_version=_image_wheels.package_version(),
        package_digest=_image_wheels.package_digest(),
    )


def _local_directory(dist: importlib.metadata.Distribution) -> str | None:
    """The source directory of a distribution installed from one (PEP 610), else None."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = info.get("url", "")
    if "dir_info" in info and url.startswith("file:"):
        return unquote(urlparse(url).path)
    return None


def default_base_image(python_minor: str) -> str:
    """The official Python slim image of that minor, from AWS's public mirror of Docker's
    official images (no anonymous pull rate limit, reachable from Fargate)."""
    return f"public.ecr.aws/docker/library/python:{python_minor}-slim"


@dataclasses.dataclass(frozen=True)
class ImageRecipe:
    """Everything that goes into a worker image; its :meth:`tag` is a hash of all of it."""

    environment: Environment
    base_image: str
    architecture: str = "x86_64"
    requirements: tuple[str, ...] = ()
    apt_packages: tuple[str, ...] = ()
    dockerfile: str | None = None  # text of the user's Dockerfile, built first as the base
    allow_index: bool = False

    def digest(self) -> str:
        env = self.environment
        document = {
            "recipe": _RECIPE_VERSION,
            "python": env.python_minor,
            "implementation": sys.implementation.name,
            "pins": [list(p) for p in env.pins],
            "local": [list(p) for p in env.local],
            "package": [env.package_version, env.package_digest],
            "base": self.base_image,
            "architecture": self.architecture,
            "template": _TEMPLATE.read_text(),
            "requirements": list(self.requirements),
            "apt": list(self.apt_packages),
            "dockerfile": self.dockerfile,
            "allow_index": self.allow_index,
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    def tag(self) -> str:
        """``py<minor>-<arch>-<24 hex digits of the digest>``: readable, and unique per content."""
        return f"py{self.environment.python_minor}-{self.architecture}-{self.digest()[:24]}"

    def render(self, index_pins: Sequence[tuple[str, str]] = (), extras: bool = False) -> str:
        """The Dockerfile for this recipe."""
        pip = (
            "/opt/starburst/venv/bin/python /tmp/wheelhouse/tools/pip.whl/pip install "
            "--no-cache-dir --disable-pip-version-check"
        )
        steps = []
        if extras:
            steps.append(
                f"RUN {pip} --no-index --find-links /tmp/wheelhouse -r /tmp/wheelhouse/extra.txt"
            )
        if index_pins:
            specs = " ".join(f"'{name}=={version}'" for name, version in index_pins)
            steps.append(f"RUN {pip} --no-deps {specs}")
        apt = ""
        if self.apt_packages:
            apt = (
                "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                f"--no-install-recommends {' '.join(self.apt_packages)} "
                "&& rm -rf /var/lib/apt/lists/*"
            )
        labels = (
            f'LABEL starburst.python="{self.environment.python_minor}" '
            f'starburst.version="{self.environment.package_version}" '
            f'starburst.recipe="{self.digest()}"'
        )
        return (
            _TEMPLATE.read_text()
            .replace("@@INDEX_INSTALL@@", "\n".join(steps))
            .replace("@@APT_INSTALL@@", apt)
            .replace("@@LABELS@@", labels)
        )


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
    environment = environment or capture_environment()
    user_dockerfile = Path(dockerfile) if dockerfile is not None else None
    if user_dockerfile is not None and not user_dockerfile.is_file():
        raise ConfigError(f"dockerfile={str(user_dockerfile)!r} is not a file")
    if config.architecture not in _PLATFORMS:
        raise ConfigError(f"architecture={config.architecture!r} is not one of x86_64, arm64")
    recipe = ImageRecipe(
        environment=environment,
        base_image=base_image or default_base_image(environment.python_minor),
        architecture=config.architecture,
        requirements=tuple(requirements),
        apt_packages=tuple(apt_packages),
        dockerfile=user_dockerfile.read_text() if user_dockerfile else None,
        allow_index=allow_index,
    )
    tag = recipe.tag()
    target: _image_registry.Registry | None = None
    if push:
        target = _ecr_target(config, repository, registry or os.environ.get("STARBURST_REGISTRY"), ecr)
        uri = f"{target.repository_uri}:{tag}"
        if not force and _registry_has(target, tag):
            log(f"{uri} is in the registry already: nothing to build")
            return BuildResult(uri, tag, built=False, pushed=False, seconds=time.monotonic() - started)
    else:
        uri = f"{repository}:{tag}"
    client = client or docker_client()
    if not push and not force and _local_image(client, uri) is not None:
        log(f"{uri} is in the local Docker daemon already: nothing to build")
        return BuildResult(uri, tag, built=False, pushed=False, seconds=time.monotonic() - started)
    log(f"building {uri} for {config.architecture} over {recipe.base_image}")
    platform = _PLATFORMS[config.architecture]
    base = recipe.base_image
    if user_dockerfile is not None:
        base = _build_user_base(client, user_dockerfile, recipe, platform, log)
    _check_base(client, base, recipe, platform, check_python, log)
    with _build_context(recipe, log) as (context, index_pins, extras):
        (context / "Dockerfile").write_text(recipe.render(index_pins, extras))
        build_started = time.monotonic()
        _stream_build(
            client,
            log,
            path=str(context),
            tag=uri,
            buildargs={"BASE_IMAGE": base},
            platform=platform,
            network_mode="host" if (index_pins or recipe.apt_packages) else "none",
        )
        build_seconds = time.monotonic() - build_started
    size, packages_size, worker_size = _sizes(client, uri)
    log(
        f"built {uri} in {build_seconds:.1f} s: {_mb(size)} in all, packages {_mb(packages_size)}, "
        f"worker layers {_mb(worker_size)}"
    )
    pushed = False
    if target is not None:
        push_started = time.monotonic()
        _stream_push(client, target, tag, log)
        pushed = True
        log(f"pushed {uri} in {time.monotonic() - push_started:.1f} s")
    return BuildResult(
        uri, tag, built=True, pushed=pushed, seconds=time.monotonic() - started,
        size=size, packages_size=packages_size, worker_size=worker_size,
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# --- the daemon -------------------------------------------------------------------------------

def docker_client(timeout: float = 120.0) -> Any:
    """A ``docker.DockerClient`` for the local daemon, checked with a ping.

    Raises:
        ConfigError: the ``docker`` package is not installed.
        ImageError: no daemon answers; the message says how to start one.
    """
    try:
        import docker
    except ImportError:
        raise ConfigError(
            "building or running worker images needs the docker SDK: "
            "pip install 'starburst-executor[docker]'"
        ) from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:  # docker raises DockerException or requests' errors here
        raise ImageError(
            f"no Docker daemon answers at {where} ({type(exc).__name__}: {exc}). Start it "
            "(`sudo systemctl start docker`, Docker Desktop, or `sudo dockerd &`), or point "
            "DOCKER_HOST at a running one."
        ) from None
    return client


def _local_image(client: Any, name: str) -> Any:
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def _check_base(
    client: Any, base: str, recipe: ImageRecipe, platform: str, check_python: bool,
    log: Callable[[str], None],
) -> None:
    """Pull the base if needed, then run it once: this proves the daemon can run (and so build)
    the target architecture, and reads the base's Python minor."""
    import docker.errors

    image = _local_image(client, base)
    if image is None:
        log(f"pulling {base} ({platform})")
        try:
            client.images.pull(base, platform=platform)
        except docker.errors.APIError as exc:
            raise ImageError(
                f"cannot pull base image {base} for {platform}: {exc.explanation or exc}. Check the "
                "name, the network, or pass base_image= an image this daemon has."
            ) from None
        image = client.images.get(base)
    arch = _DOCKER_ARCH.get(image.attrs.get("Architecture", ""), image.attrs.get("Architecture"))
    daemon_arch = _DOCKER_ARCH.get(client.version().get("Arch", ""), "")
    if arch != recipe.architecture:
        raise ImageError(
            f"base image {base} is built for {arch}, but architecture={recipe.architecture} needs "
            f"{platform}: use a multi-platform base image or one built for {platform}"
        )
    hint = ""
    if daemon_arch and daemon_arch != recipe.architecture:
        hint = (
            f" The daemon runs on {daemon_arch} and cannot run {recipe.architecture} images, so it "
            f"cannot build them: register QEMU emulation (`apt-get install qemu-user-static "
            f"binfmt-support`), build on an {recipe.architecture} machine, or use "
            f"architecture={daemon_arch}."
        )
    try:
        out = client.containers.run(
            base,
            ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            remove=True, network_mode="none", platform=platform,
        )
    except docker.errors.ContainerError as exc:
        raise ImageError(f"base image {base} cannot run python3 on this daemon: {exc}.{hint}") from None
    except docker.errors.DockerException as exc:
        detail = getattr(exc, "explanation", None) or exc
        raise ImageError(f"cannot start base image {base}: {detail}.{hint}") from None
    minor = out.decode().strip()
    wanted = recipe.environment.python_minor
    if minor != wanted:
        message = (
            f"base image {base} runs Python {minor}, the client runs {wanted}: pickled code only "
            f"travels between equal minor versions. Use a base image with Python {wanted}"
        )
        if check_python:
            raise ImageError(message + ".")
        log("warning: " + message)


def _build_user_base(
    client: Any, dockerfile: Path, recipe: ImageRecipe, platform: str, log: Callable[[str], None]
) -> str:
    tag = "starburst-user-base:" + hashlib.sha256((recipe.dockerfile or "").encode()).hexdigest()[:24]
    if _local_image(client, tag) is None:
        log(f"building your Dockerfile {dockerfile} as the base ({tag})")
        _stream_build(
            client, log, path=str(dockerfile.parent), dockerfile=dockerfile.name, tag=tag,
            platform=platform, network_mode="host",
        )
    return tag


def _stream_build(client: Any, log: Callable[[str], None], **kwargs: Any) -> None:
    import docker.errors

    try:
        for chunk in client.api.build(rm=True, forcerm=True, pull=False, decode=True, **kwargs):
            if "error" in chunk:
                raise ImageError(f"docker build failed: {chunk['error'].strip()}")
            text = chunk.get("stream", "").rstrip()
            if text:
                log(text)
    except docker.errors.APIError as exc:
        raise ImageError(f"docker build failed: {exc.explanation or exc}") from None


def _stream_push(
    client: Any, target: _image_registry.Registry, tag: str, log: Callable[[str], None]
) -> None:
    import docker.errors

    seen: set[tuple[str, str]] = set()
    try:
        stream = client.api.push(
            target.repository_uri, tag=tag, stream=True, decode=True,
            auth_config=target.auth_config(),
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageError(
                    f"docker push to {target.host} failed: {chunk['error'].strip()}. Check that "
                    "the ECR repository exists and your credentials may push to it "
                    "(ecr:InitiateLayerUpload, ecr:PutImage)."
                )
            status = chunk.get("status", "")
            layer = chunk.get("id", "")
            # One line per layer and state, not one per progress tick.
            if status and (layer, status) not in seen and status not in _PUSH_TICKS:
                seen.add((layer, status))
                log(f"{layer}: {status}" if layer else status)
    except docker.errors.APIError as exc:
        raise ImageError(f"docker push to {target.host} failed: {exc.explanation or exc}") from None


def _sizes(client: Any, uri: str) -> tuple[int, int, int]:
    """(image size, packages layer size, size of the layers over the packages)."""
    image = client.images.get(uri)
    history = client.api.history(uri)  # newest first
    worker = 0
    packages = 0
    for entry in history:
        created_by = entry.get("CreatedBy", "")
        if "COPY" in created_by and "/opt/starburst/venv" in created_by:
            packages = int(entry.get("Size", 0))
            break
        worker += int(entry.get("Size", 0))
    return int(image.attrs.get("Size", 0)), packages, worker


# --- the build context ------------------------------------------------------------------------

@contextmanager
def _build_context(
    recipe: ImageRecipe, log: Callable[[str], None]
) -> Iterator[tuple[Path, list[tuple[str, str]], bool]]:
    """A directory with the wheelhouse and the worker wheel; yields (it, pins to install from the
    index during the build, whether extra requirements are in the wheelhouse)."""
    env = recipe.environment
    target = _image_wheels.Target(env.python_minor, recipe.architecture)
    with tempfile.TemporaryDirectory(prefix="starburst-build-") as tmp:
        context = Path(tmp)
        wheelhouse = context / "wheelhouse"
        (wheelhouse / "tools").mkdir(parents=True)
        try:
            found, missing = _image_wheels.download_wheels(env.pins, target, log=log)
            pip = _image_wheels.pip_wheel(target, log)
        except RuntimeError as exc:
            raise ImageError(f"cannot prepare the wheelhouse: {exc}") from None
        if missing and not recipe.allow_index:
            names = ", ".join(f"{n}=={v}" for n, v in missing)
            raise ImageError(
                f"no wheel for {target.key} (Linux {recipe.architecture}, Python "
                f"{env.python_minor}) of: {names}. Upgrade or pin a version that ships one, "
                "exclude the package, or pass allow_index=True to install it from the package "
                "index during the build."
            )
        if missing:
            log("installing from the index during the build: " + ", ".join(n for n, _ in missing))
        for path in found.values():
            _link(path, wheelhouse / path.name)
        _link(pip, wheelhouse / "tools" / "pip.whl")
        lines = [f"{name}=={version}" for name, version in sorted(found)]
        for name, version, directory in env.local:
            try:
                wheel = _image_wheels.local_wheel(Path(directory), wheelhouse)
            except RuntimeError as exc:
                raise ImageError(f"cannot build {name} from {directory}: {exc}") from None
            lines.append(f"{name}=={version}")
            log(f"built {wheel.name} from {directory}")
        (wheelhouse / "requirements.txt").write_text("".join(line + "\n" for line in lines))
        extras = bool(recipe.requirements)
        if extras:
            _download_extras(recipe.requirements, target, wheelhouse, log)
            (wheelhouse / "extra.txt").write_text("".join(r + "\n" for r in recipe.requirements))
        _image_wheels.package_wheel(context / "worker", env.package_version or None)
        yield context, missing, extras


def _download_extras(
    requirements: Sequence[str], target: _image_wheels.Target, dest: Path, log: Callable[[str], None]
) -> None:
    import subprocess

    log(f"downloading extra requirements: {', '.join(requirements)}")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "download",
         "--only-binary=:all:", "--dest", str(dest), *target.pip_args(), *requirements],
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


# --- AWS --------------------------------------------------------------------------------------

def _ecr_target(
    config: Config, repository: str, registry: str | None, ecr: Any
) -> _image_registry.Registry:
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        raise ConfigError("pushing to ECR needs boto3: pip install boto3") from None
    try:
        if ecr is None:
            ecr = boto3.session.Session(region_name=config.region).client("ecr")
        return _image_registry.ecr_registry(ecr, repository, host_override=registry)
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError(
            "no AWS credentials found: run `aws configure` (or `aws sso login`), or set "
            "AWS_PROFILE / AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except botocore.exceptions.NoRegionError:
        raise ConfigError("no AWS region: pass region= or set AWS_REGION / STARBURST_REGION") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise ImageError(f"cannot reach ECR ({exc}): check the network and the region") from None
    except botocore.exceptions.ClientError as exc:
        raise ImageError(
            f"ECR refused {exc.operation_name} for repository {repository!r}: {exc}. Your "
            "credentials need ecr:DescribeRepositories, ecr:CreateRepository, "
            "ecr:GetAuthorizationToken and the push permissions."
        ) from None


def _registry_has(target: _image_registry.Registry, tag: str) -> bool:
    try:
        return _image_registry.manifest_exists(target, tag)
    except PermissionError as exc:
        raise ImageError(f"{exc}: check that your credentials may pull from ECR") from None
    except OSError as exc:
        raise ImageError(
            f"cannot reach the registry {target.host} ({exc}): check the network, and for a "
            "stand-in registry that it is running"
        ) from None

