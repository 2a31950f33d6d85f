"""The ``starburst`` commands about detached sessions: ``status`` (their part), ``collect`` and
``cancel``.  Used by ``cli``; reads sessions through :func:`~starburst_executor.session.attach`.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

from .session import attach, local_sessions

__all__ = ["add_parsers", "print_detached", "cmd_collect", "cmd_cancel"]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """``collect`` and ``cancel``."""
    p = sub.add_parser("collect", parents=[common], help="wait for a detached session's results "
                       "and save them", description="Attach to a detached session, wait for "
                       "every call and write the results, in submission order, to a file (a "
                       "failed call's place holds its exception, or {\"error\": ...} in JSON).")
    _session_arguments(p)
    p.add_argument("-o", "--output", required=True, help="file to write (\"-\": stdout)")
    p.add_argument("--format", choices=("pickle", "json"), default="pickle",
                   help="pickle (a list) or json (for JSON-able results)")
    p.add_argument("--timeout", type=float, default=None, help="give up after SECONDS")
    p = sub.add_parser("cancel", parents=[common], help="stop a detached session's workers",
                       description="Stop every worker of a detached session now; calls not "
                       "finished fail with SessionStopped.")
    _session_arguments(p)


def _session_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", help="session id (see `starburst status`)")
    p.add_argument("--secret-file", help="the session's .key file, when it was submitted from "
                   "another machine")
    p.add_argument("--store", help="the session's store URL, when submitted from elsewhere")


def _attach(args: argparse.Namespace) -> Any:
    secret = Path(args.secret_file).read_text().strip() if args.secret_file else None
    return attach(args.session, secret=secret, store=args.store,
                  region=getattr(args, "region", None))


def print_detached(as_json: bool) -> bool:
    """Print the detached sessions submitted from this machine; return whether there were."""
    ids = local_sessions()
    rows: list[dict[str, Any]] = []
    for session_id in ids:
        try:
            session = attach(session_id)
        except Exception as exc:  # its store may be gone: say so, list the others
            rows.append({"session": session_id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        try:
            status = session.status()
        finally:
            session.close()
        rows.append({"session": session_id, "calls": status.calls, "done": status.done,
                     "failed": status.failed, "running": status.running,
                     "pending": status.pending, "workers": status.workers,
                     "cost": status.cost, "stopped": status.halted})
    if as_json:
        if rows:
            print(json.dumps({"detached": rows}, indent=2))
        return bool(rows)
    if rows:
        print(f"{'DETACHED SESSION':<24} {'DONE':>11} {'FAILED':>6} {'RUNNING':>7} "
              f"{'WORKERS':>7} {'COST':>9}  STOPPED")
    for row in rows:
        if "error" in row:
            print(f"{row['session']:<24} cannot be read: {row['error']}")
            continue
        done = f"{row['done'] + row['failed']}/{row['calls']}"
        print(f"{row['session']:<24} {done:>11} {row['failed']:>6} {row['running']:>7} "
              f"{row['workers']:>7} ${row['cost']:>8.4f}  {row['stopped'] or ''}")
    return bool(rows)


def cmd_collect(args: argparse.Namespace) -> int:
    session = _attach(args)
    try:
        futures = session.futures()
        from concurrent.futures import wait

        _, not_done = wait(futures, timeout=args.timeout)
        if not_done:
            print(f"starburst: error: {len(not_done)} calls of {args.session} not done after "
                  f"{args.timeout:g}s", file=sys.stderr)
            return 1
        values: list[Any] = []
        failed = 0
        for future in futures:
            error = future.exception()
            failed += error is not None
            if error is None:
                values.append(future.result())
            elif args.format == "json":
                values.append({"error": f"{type(error).__name__}: {error}"})
            else:
                values.append(error)
        data = json.dumps(values).encode() if args.format == "json" else pickle.dumps(values)
        if args.output == "-":
            sys.stdout.buffer.write(data)
        else:
            Path(args.output).write_bytes(data)
        print(f"{len(values)} results of {args.session} written to {args.output} "
              f"({failed} failed)", file=sys.stderr)
        return 1 if failed else 0
    finally:
        session.close()


def cmd_cancel(args: argparse.Namespace) -> int:
    session = _attach(args)
    try:
        session.cancel("cancelled with `starburst cancel`")
        print(f"Session {args.session} cancelled: its workers are stopped.")
        return 0
    finally:
        session.close()
