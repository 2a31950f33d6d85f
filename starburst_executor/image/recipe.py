"""What goes into a worker image: the client's environment, the recipe, and its content-hash tag.

The tag hashes the Python minor, every pin, the base image, the Dockerfile template, the options
and the files of this package that run in the worker (:func:`.wheels.worker_digest`): an edit
to the command line or to provisioning keeps the tag, an edit to the worker changes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from . import wheels

__all__ = [
    "Environment",
    "ImageRecipe",
    "capture_environment",
    "default_base_image",
    "TEMPLATE",
]

# The template's folder is mapped into the package by pyproject.toml (not a module mypy sees).
_TEMPLATE_PACKAGE = importlib.import_module("starburst_executor.worker_image")
TEMPLATE = Path(_TEMPLATE_PACKAGE.__file__ or ".").parent / "Dockerfile.template"
_RECIPE_VERSION = 1


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
        package_digest: sha256 of the files of this package that run in the worker (an edited
            worker gets a new tag; an edited command line does not).
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
        norm = wheels.normalize(name)
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
    skip = {wheels.normalize(n) for n in exclude} | {wheels.DIST_NAME}
    pins: dict[str, str] = {}
    local: dict[str, tuple[str, str, str]] = {}
    for dist in dists:
        name = dist.metadata["Name"]
        if not name:
            continue
        norm = wheels.normalize(name)
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
        package_version=wheels.package_version(),
        package_digest=wheels.worker_digest(),
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
            "template": TEMPLATE.read_text(),
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
            TEMPLATE.read_text()
            .replace("@@INDEX_INSTALL@@", "\n".join(steps))
            .replace("@@APT_INSTALL@@", apt)
            .replace("@@LABELS@@", labels)
        )
