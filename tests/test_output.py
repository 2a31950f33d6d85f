"""_output: the bounded capture of a call's output, and how the client writes it out."""

from __future__ import annotations

import io
import logging
import sys
import threading

from starburst_executor._output import OutputCapture, write_output


def test_a_call_captures_its_prints_logs_and_threads_in_order() -> None:
    capture = OutputCapture()
    with capture:
        tee = sys.stderr
        with capture.call() as buffer:
            print("one")
            print("two", file=sys.stderr)
            thread = threading.Thread(target=print, args=("from a thread",))
            thread.start()
            thread.join()
            alone = logging.getLogger("sbx.alone")  # no handler: logging's last resort
            alone.propagate = False  # (pytest gives the root logger one)
            alone.warning("careful")
        print("between calls")
    assert sys.stderr is not tee  # restored
    assert buffer.output() == (("stdout", "one\n"), ("stderr", "two\n"),
                               ("stdout", "from a thread\n"), ("stderr", "careful\n"))


def test_a_handler_made_in_one_call_feeds_the_next_calls_capture() -> None:
    capture = OutputCapture()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with capture:
            with capture.call() as first:
                handler = logging.StreamHandler()  # holds sys.stderr: the capture's
                handler.setFormatter(logging.Formatter("%(levelname)s:%(message)s"))
                root.addHandler(handler)
                root.setLevel(logging.INFO)
                logging.getLogger("sbx.test").info("first")
            with capture.call() as second:
                logging.getLogger("sbx.test").info("second")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert first.output() == (("stderr", "INFO:first\n"),)
    with capture, capture.call() as quiet:
        pass
    assert quiet.output() == () and capture.current is None  # no buffer was made for it
    assert second.output() == (("stderr", "INFO:second\n"),)


def test_the_capture_keeps_the_last_characters_and_says_how_many_were_dropped() -> None:
    capture = OutputCapture(limit=10)
    with capture, capture.call() as buffer:
        sys.stdout.write("abcdefgh")
        sys.stderr.write("12345678")
    assert buffer.output() == (
        ("stderr", "[starburst: 6 characters of output dropped; the last 10 are kept]\n"),
        ("stdout", "gh"), ("stderr", "12345678"))


def test_write_output_marks_every_line_and_ends_open_lines() -> None:
    out, err = io.StringIO(), io.StringIO()
    write_output(7, (("stdout", "a\nb"), ("stderr", "oops\n"), ("stdout", "c\nd\n")), out, err)
    assert out.getvalue() == "[call 7] a\n[call 7] bc\n[call 7] d\n"
    assert err.getvalue() == "[call 7] oops\n"
    partial = io.StringIO()
    write_output(8, (("stdout", "no newline"),), partial, io.StringIO())
    assert partial.getvalue() == "[call 8] no newline\n"


def test_write_output_never_raises() -> None:
    closed = io.StringIO()
    closed.close()
    write_output(1, (("stdout", "x\n"),), closed, closed)


def test_many_tiny_writes_are_merged_as_they_come() -> None:
    capture = OutputCapture(limit=100)
    with capture, capture.call() as buffer:
        for i in range(5000):
            sys.stdout.write("ab"[i % 2])
            if i % 1000 == 0:
                sys.stderr.write("|")
        assert capture.current is not None and len(capture.current._pieces) <= 1025
    (_, note), (_, text) = buffer.output()
    assert "4905 characters of output dropped" in note and text == "ab" * 50
