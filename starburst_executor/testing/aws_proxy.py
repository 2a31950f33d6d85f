"""A counting, fault-injecting HTTP proxy in front of a moto server.

Every boto3 client (the executor's and its workers', which run in other processes) is pointed at
the proxy through ``AWS_ENDPOINT_URL``; the proxy forwards each request to moto and counts it by
service and operation, so request budgets can be checked on what was really sent.  Hooks may
answer a request themselves (an S3 ``SlowDown``, a ``RunTask`` with ``failures``) or rewrite it.

::

    boto3 (client, workers) --HTTP--> AwsProxy [count, hooks] --HTTP--> moto server
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["AwsProxy", "ProxyRequest", "ProxyResponse", "slow_down_response"]

_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/aws4_request")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
               "proxy-connection", "te", "trailer", "upgrade"}


@dataclasses.dataclass
class ProxyRequest:
    """One request seen by the proxy.  Hooks may change ``body`` to rewrite it."""

    service: str
    operation: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    access_key: str = ""  # the signer's access key id: who sent it (see ``by_caller``)

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclasses.dataclass
class ProxyResponse:
    """An answer a hook gives instead of forwarding the request."""

    status: int
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def slow_down_response() -> ProxyResponse:
    """What S3 answers when asked to slow down: 503 with code ``SlowDown``."""
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message><RequestId>STARBURSTTEST</RequestId>"
        b"</Error>"
    )
    return ProxyResponse(503, body, {"Content-Type": "application/xml"})


def _s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    segments = [s for s in path.split("/") if s]
    on_object = len(segments) >= 2
    if method == "GET":
        if not on_object:
            if "list-type" in query:
                return "ListObjectsV2"
            return "ListBuckets" if not segments else "ListObjects"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject" if on_object else "HeadBucket"
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPart"
        return "PutObject" if on_object else "CreateBucket"
    if method == "POST":
        if "delete" in query:
            return "DeleteObjects"
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "PostObject"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObject" if on_object else "DeleteBucket"
    return method


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client (a worker being killed, a closed keep-alive connection) hanging up is normal.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class AwsProxy:
    """Forwards to ``target`` (a moto endpoint), counting requests and running hooks.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT`` to put in ``AWS_ENDPOINT_URL``.
        requests: number of requests by ``(service, operation)``, injected answers included.
        by_caller: the same, by the access key id that signed them: who sent each request
            (the emulated Fargate gives each task its own key).
        injected: number of answers given by hooks, by ``(service, operation)``.
    """

    def __init__(self, target: str):
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: dict[tuple[str, str], int] = {}
        self.by_caller: dict[str, dict[tuple[str, str], int]] = {}
        self.injected: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._hooks: list[Callable[[ProxyRequest], ProxyResponse | None]] = []
        self._observers: list[Callable[[ProxyRequest, int, bytes], None]] = []
        self._latency: dict[str | None, float] = {}
        self._local = threading.local()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> AwsProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="starburst-aws-proxy", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def add_hook(self, hook: Callable[[ProxyRequest], ProxyResponse | None]) -> None:
        """Run ``hook`` on each request; a ``ProxyResponse`` it returns is sent instead."""
        with self._lock:
            self._hooks.append(hook)

    def add_observer(self, observer: Callable[[ProxyRequest, int, bytes], None]) -> None:
        """Call ``observer(request, status, body)`` after each forwarded request."""
        with self._lock:
            self._observers.append(observer)

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        """Requests seen, optionally of one service and/or operation."""
        with self._lock:
            return sum(
                n for (s, o), n in self.requests.items()
                if (service is None or s == service) and (operation is None or o == operation)
            )

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.by_caller.clear()
            self.injected.clear()

    def set_latency(self, seconds: float, service: str | None = None) -> None:
        """Answer each request (of ``service``, if given) ``seconds`` later, as a real
        endpoint far away would (S3: about 0.03 s a request from inside a region)."""
        with self._lock:
            self._latency[service] = seconds

    def inject_s3_slow_down(self, times: int = 1, operation: str | None = None) -> None:
        """Answer the next ``times`` S3 requests (of ``operation``, if given) with ``SlowDown``."""
        left = [times]

        def hook(request: ProxyRequest) -> ProxyResponse | None:
            if request.service != "s3" or (operation and request.operation != operation):
                return None
            with self._lock:
                if left[0] <= 0:
                    return None
                left[0] -= 1
            return slow_down_response()

        self.add_hook(hook)

    # -- serving -------------------------------------------------------------------------

    def _read_body(self, handler: http.server.BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
            return b"".join(chunks)
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _classify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[
            str, str]:
        match = _CREDENTIAL.search(headers.get("Authorization", ""))
        service = match.group(2) if match else "unknown"
        target = headers.get("X-Amz-Target")
        if target:
            return service, target.rsplit(".", 1)[-1]
        split = urlsplit(path)
        query = parse_qs(split.query, keep_blank_values=True)
        if service == "s3":
            return service, _s3_operation(method, split.path, query)
        if "Action" in query:
            return service, query["Action"][0]
        if body and headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:
                return service, form["Action"][0]
        return service, f"{method} {split.path}"

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in handler.headers.items()}
        body = self._read_body(handler)
        service, operation = self._classify(handler.command, handler.path, headers, body)
        signer = _CREDENTIAL.search(headers.get("Authorization", ""))
        request = ProxyRequest(service, operation, handler.command, handler.path, headers, body,
                               signer.group(1) if signer else "")
        with self._lock:
            key = (service, operation)
            self.requests[key] = self.requests.get(key, 0) + 1
            mine = self.by_caller.setdefault(request.access_key, {})
            mine[key] = mine.get(key, 0) + 1
            hooks = list(self._hooks)
            observers = list(self._observers)
            delay = self._latency.get(service, self._latency.get(None, 0.0))
        if delay > 0:
            time.sleep(delay)  # the server is threaded: requests wait side by side
        answer = None
        for hook in hooks:
            answer = hook(request)
            if answer is not None:
                with self._lock:
                    self.injected[key] = self.injected.get(key, 0) + 1
                break
        if answer is None:
            answer = self._forward(request)
            for observer in observers:
                observer(request, answer.status, answer.body)
        handler.send_response(answer.status)
        for name, value in answer.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                handler.send_header(name, value)
        length = str(len(answer.body))
        if handler.command == "HEAD":  # no body, but the length of the one a GET would have
            length = next((v for k, v in answer.headers.items() if k.lower() == "content-length"),
                          length)
        handler.send_header("Content-Length", length)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(answer.body)

    def _forward(self, request: ProxyRequest) -> ProxyResponse:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(request.body))
        headers["Host"] = f"{self._target[0]}:{self._target[1]}"
        for attempt in range(2):
            if connection is None:
                connection = http.client.HTTPConnection(*self._target, timeout=120)
                self._local.connection = connection
            try:
                connection.request(request.method, request.path, body=request.body,
                                   headers=headers)
                response = connection.getresponse()
                data = response.read()
                return ProxyResponse(response.status, data, dict(response.getheaders()))
            except (http.client.HTTPException, OSError):
                connection.close()
                connection = None
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")
