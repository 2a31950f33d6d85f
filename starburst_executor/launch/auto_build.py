"""The worker image of a launcher: the configured one, or with ``auto_build=True`` and none
configured, the image of this environment, built once at the first launch.

The build happens in the launcher, never in the executor's constructor (no network there): the
first ``launch()`` builds under a lock while later ones wait for it, and a failed build fails
the workers of that launch as any launch failure does.  The next launch tries again.
"""

from __future__ import annotations

import sys
import threading

from ..config import Config

__all__ = ["WorkerImage"]


def _log(message: str) -> None:
    print(f"starburst: {message}", file=sys.stderr, flush=True)


class WorkerImage:
    """The image a launcher runs.

    Args:
        image: the configured image, if any.
        build_from: build the image from these settings when ``image`` is None (``auto_build``).
        push: push the built image to ECR (Fargate) or keep it in the local daemon (docker).
    """

    def __init__(self, image: str | None, build_from: Config | None = None, *,
                 push: bool = True):
        self._image = image
        self._build_from = build_from if not image else None
        self._push = push
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config, *, push: bool) -> WorkerImage:
        """``config.image``, else the image ``config.auto_build`` builds, else none."""
        return cls(config.image, config if config.auto_build else None, push=push)

    @property
    def known(self) -> str | None:
        """The image if it is known without a build (configured, or built already)."""
        return self._image

    @property
    def pending(self) -> bool:
        """Whether the image is still to be built by :meth:`get`."""
        return self._image is None and self._build_from is not None

    def get(self) -> str | None:
        """The image, built first if it is pending; None when none is configured.

        Raises:
            ConfigError, ImageError: the build failed; the message says what to do.
        """
        with self._lock:
            if self._image is None and self._build_from is not None:
                from ..image import ensure_image

                _log("auto_build=True and no image configured: building the worker image of "
                     "this environment (skipped when the registry already has it)")
                self._image = ensure_image(self._build_from, log=_log, push=self._push)
                _log(f"worker image: {self._image}")
            return self._image
