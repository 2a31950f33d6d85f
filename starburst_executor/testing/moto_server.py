"""A moto server on loopback, with boto3 pointed at it through the environment."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["MotoServer"]

# Credentials and region for the fake account; never real ones.
FAKE_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextlib.contextmanager
def patched_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the block, with the real AWS credential and config
    files hidden, so nothing can reach a real account."""
    saved = dict(os.environ)
    os.environ.update(env)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class MotoServer:
    """A ``moto.server.ThreadedMotoServer`` bound to 127.0.0.1 on a free port.

    Use :meth:`env` for the variables that point boto3 (in this process or in a worker
    subprocess) at it, or :meth:`patched_environ` to set them in ``os.environ``.
    """

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> MotoServer:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment variables that send every boto3 client to this server."""
        return {**FAKE_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def patched_environ(self) -> contextlib.AbstractContextManager[None]:
        """Set :meth:`env` in ``os.environ`` (hiding real credential files) for the block."""
        return patched_environ(self.env())

    def reset(self) -> None:
        """Forget every resource (``POST /moto-api/reset``)."""
        self._post("/moto-api/reset", {})

    def freeze_task_transitions(self) -> None:
        """Stop moto from advancing ECS task states on each ``describe_tasks``."""
        self._post(
            "/moto-api/state-manager/set-transition",
            {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000}},
        )

    def _post(self, path: str, body: Any) -> None:
        request = urllib.request.Request(
            self.endpoint + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            response.read()
