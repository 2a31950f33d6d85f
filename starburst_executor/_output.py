"""A call's output (stdout, stderr, log records): captured on the worker, written out on the client.

On the worker, :class:`OutputCapture` replaces ``sys.stdout`` and ``sys.stderr`` for as long as
the worker serves, before any user code is unpickled, with streams that write through to the
worker's own (its log) and, while a call runs, also into that call's buffer.  The buffer keeps
the last :data:`LIMIT` characters, with a note of how many were dropped, so a chatty call cannot
blow up a result part.

Log records are captured because logging writes them to ``sys.stderr``: logging's last-resort
handler (an unconfigured program prints warnings and above) looks the stream up at each record,
and a ``StreamHandler`` made by ``logging.basicConfig()`` or by ``logging.warning()`` in user
code, at import or in a call, holds the stream it found then, which is ours.  A handler of our
own on the root logger would do worse: ``basicConfig()`` in a call would do nothing (the root
would already have a handler) and every record would be captured twice once the user configures
logging.  What is written to file descriptors 1 and 2 directly (C code, subprocesses) is not
captured; it stays in the worker's log.

On the client, :func:`write_output` writes a call's output to its own ``sys.stdout`` and
``sys.stderr``, every line marked ``[call N] ``.  Always marked, not only once a second call
prints: a call's output arrives in one piece with its result, after and between other calls'
output and not in submit order, and a mark that appeared only from the second call on would
change the format in the middle of a run.
"""

from __future__ import annotations

import collections
import io
import sys
import threading
from typing import IO, Any, TextIO, cast

__all__ = ["LIMIT", "Output", "OutputCapture", "write_output"]

LIMIT = 1024 * 1024
"""The most characters of output kept per call (the last ones)."""

Output = tuple[tuple[str, str], ...]
"""A call's output in order: ``(("stdout", text), ("stderr", text), ...)``."""

_MAX_PIECES = 1024


class _CallBuffer:
    """The output of one call, in order, bounded to its last ``limit`` characters."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pieces: collections.deque[tuple[str, str]] = collections.deque()
        self._size = 0  # characters kept
        self._skip = 0  # characters of the first piece dropped already (no copy made per write)
        self._dropped = 0
        self._lock = threading.Lock()  # a call's own threads print too

    def add(self, stream: str, text: str) -> None:
        with self._lock:
            self._pieces.append((stream, text))
            self._size += len(text)
            while self._size > self._limit:
                excess = self._size - self._limit
                left = len(self._pieces[0][1]) - self._skip
                cut = min(left, excess)
                if cut == left:
                    self._pieces.popleft()
                    self._skip = 0
                else:
                    self._skip += cut
                self._size -= cut
                self._dropped += cut
            if len(self._pieces) > _MAX_PIECES:  # a million one-character writes stay small
                self._pieces = collections.deque(self._merged())
                self._skip = 0

    def _merged(self) -> list[tuple[str, str]]:
        merged: list[tuple[str, list[str]]] = []
        for i, (stream, text) in enumerate(self._pieces):
            if i == 0 and self._skip:
                text = text[self._skip:]
            if merged and merged[-1][0] == stream:
                merged[-1][1].append(text)
            else:
                merged.append((stream, [text]))
        return [(stream, "".join(texts)) for stream, texts in merged]

    def output(self) -> Output:
        with self._lock:
            out = self._merged()
            if self._dropped:
                out.insert(0, ("stderr", f"[starburst: {self._dropped} characters of output "
                                         f"dropped; the last {self._limit} are kept]\n"))
            return tuple(out)


class _Tee(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a worker: the worker's own stream, and the call's."""

    def __init__(self, name: str, target: TextIO, capture: OutputCapture) -> None:
        super().__init__()
        self._name = name
        self._target = target
        self._capture = capture

    def write(self, text: str) -> int:
        try:
            self._target.write(text)
        except Exception:  # the worker's log failing must not fail the call: it is captured
            pass
        buffer = self._capture.buffer()
        if buffer is not None:
            buffer.add(self._name, text)
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._target.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._target.errors

    @property
    def buffer(self) -> IO[bytes]:
        """Bytes written here go to the worker's log only."""
        return self._target.buffer


class OutputCapture:
    """Captures the output of the worker's calls (see the module docstring).

    ``with capture:`` installs the streams, for the worker's life; :meth:`begin` and
    :meth:`end` bracket one call (``with capture.call() as call:`` does both, and
    ``call.output()`` then holds what it wrote).  A call's buffer is made at its first write,
    so the many calls that print nothing cost next to nothing.
    """

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.current: _CallBuffer | None = None  # the running call's, once it wrote
        self._in_call = False
        self._lock = threading.Lock()  # a call's own threads may write first together
        self._saved: tuple[TextIO, TextIO] | None = None

    def __enter__(self) -> OutputCapture:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = cast(TextIO, _Tee("stdout", sys.stdout, self))
        sys.stderr = cast(TextIO, _Tee("stderr", sys.stderr, self))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None

    def buffer(self) -> _CallBuffer | None:
        """The running call's buffer (made now if it has none yet); ``None`` between calls."""
        buffer = self.current
        if buffer is None and self._in_call:
            with self._lock:
                if self.current is None and self._in_call:
                    self.current = _CallBuffer(self.limit)
                buffer = self.current
        return buffer

    def begin(self) -> None:
        """Start capturing a call's output."""
        self.current = None
        self._in_call = True

    def end(self) -> Output:
        """Stop capturing the call's output and return it (``()`` if it wrote nothing)."""
        with self._lock:
            self._in_call = False
            buffer, self.current = self.current, None
        if buffer is None:
            return ()
        for stream in (sys.stdout, sys.stderr):  # what it wrote reaches the worker's log now
            try:
                stream.flush()
            except Exception:  # a stream the call replaced or closed
                pass
        return buffer.output()

    def call(self) -> _CallContext:
        return _CallContext(self)


class _CallContext:
    def __init__(self, capture: OutputCapture) -> None:
        self._capture = capture
        self._output: Output = ()

    def __enter__(self) -> _CallContext:
        self._capture.begin()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._output = self._capture.end()

    def output(self) -> Output:
        """What the call wrote, once it ended."""
        return self._output


def write_output(item_id: int, output: Output, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
    """Write a call's output to ``stdout``/``stderr`` (default: the client's ``sys.stdout`` and
    ``sys.stderr`` now), each line marked ``[call <item_id>] ``; never raises."""
    streams = {"stdout": stdout or sys.stdout, "stderr": stderr or sys.stderr}
    mark = f"[call {item_id}] "
    at_line_start = {"stdout": True, "stderr": True}
    try:
        for name, text in output:
            name = name if name in streams else "stderr"
            stream = streams[name]
            lines = text.splitlines(keepends=True)
            for i, line in enumerate(lines):
                if i or at_line_start[name]:
                    stream.write(mark)
                stream.write(line)
            if lines:
                at_line_start[name] = lines[-1].endswith(("\n", "\r"))
        for name, stream in streams.items():
            if not at_line_start[name]:
                stream.write("\n")  # the next call's output starts on a line of its own
            stream.flush()
    except Exception:  # a closed or missing stream on the client must not break the executor
        pass
