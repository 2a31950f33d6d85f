"""The worker image: the client's environment, exactly, in a container that Fargate can run.

::

    capture_environment()          Python minor, every installed distribution pinned, the
            |                      files of this package that run in the worker    (recipe)
    ImageRecipe.tag()              sha256 of everything that goes in -> "py3.11-x86_64-<hash>"
            |
    build_image()                  skip if the registry has the tag; else wheelhouse (wheels),
                                   docker build (daemon), push to ECR (registry)   (build)

The user's own modules that are not installed travel by value through cloudpickle, not in the
image.  :func:`ensure_image` is what ``starburst build`` and ``auto_build=True`` call.
"""

from __future__ import annotations

from ..errors import ImageError
from .build import DEFAULT_REPOSITORY, BuildResult, build_image, ensure_image
from .recipe import Environment, ImageRecipe, capture_environment, default_base_image

__all__ = [
    "DEFAULT_REPOSITORY",
    "BuildResult",
    "Environment",
    "ImageError",
    "ImageRecipe",
    "build_image",
    "capture_environment",
    "default_base_image",
    "ensure_image",
]
