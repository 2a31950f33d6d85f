"""What every RunTask names, looked up once: the task definition and the network.

Looked up in the background from the first submit (:meth:`Lookups.start`), so that the round
trips overlap the client's own start, or else at the first launch; a launch waits for a lookup
under way and reports its error (the next launch looks again).  They have a lock of their own:
stopping tasks never waits for them (nor for an ``auto_build`` image build).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...config import Config
from ..auto_build import WorkerImage
from . import taskdef

__all__ = ["Lookups"]


class Lookups:
    """The task definition ARN and the network configuration of a launcher's tasks.

    Args:
        config: the launcher's configuration.
        image: its worker image (built first, if pending).
        region: the region, when asked.
        client: a boto3 client by service name (the launcher's, shared and counted).
    """

    def __init__(self, config: Config, image: WorkerImage, region: Callable[[], str],
                 client: Callable[[str], Any]) -> None:
        self._config = config
        self._image = image
        self._region = region
        self._client = client
        self._lock = threading.Lock()
        self._started = False
        self._error: Exception | None = None  # the background lookup's, until reported
        self._task_definition: str | None = None
        self._network: dict[str, Any] | None = None

    def start(self) -> None:
        """Look up in the background (once); :meth:`get` waits for it."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._in_background, name="starburst-lookups",
                         daemon=True).start()

    def _in_background(self) -> None:
        with self._lock:
            try:
                self._look_up()
            except Exception as exc:  # reported by the next get()
                self._error = exc

    def get(self) -> tuple[str, dict[str, Any]]:
        """(task definition ARN, network configuration).

        Raises:
            StarburstError: a lookup failed (the background one's error is raised once).
        """
        with self._lock:
            error, self._error = self._error, None
            if error is not None:
                raise error
            return self._look_up()

    def _look_up(self) -> tuple[str, dict[str, Any]]:
        if self._network is None:
            # The network (EC2) is looked up while the task definition (STS, ECS) is: a few
            # round trips each, before the first RunTask.
            with ThreadPoolExecutor(1, thread_name_prefix="starburst-network") as pool:
                network = pool.submit(taskdef.resolve_network, self._config, self._region(),
                                      self._client)
                self._ensure_task_definition()
                self._network = network.result()
        self._ensure_task_definition()
        assert self._task_definition is not None
        return self._task_definition, self._network

    def _ensure_task_definition(self) -> None:
        if self._task_definition is None:
            image = self._image.get()
            assert image is not None  # a launcher without one is refused
            self._task_definition = taskdef.ensure_task_definition(
                self._config, image, self._region(), self._client)
