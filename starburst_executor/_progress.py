"""A tqdm bar over an executor's outstanding work: total grows with submits, n with results."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["ProgressBar"]


class ProgressBar:
    """Opened on the first submit, closed when all submitted work is done; thread-safe."""

    def __init__(self, description: str = "starburst") -> None:
        self._description = description
        self._lock = threading.Lock()
        self._bar: Any = None
        self._postfix: dict[str, str] = {}

    def add(self, n: int) -> None:
        with self._lock:
            if self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=0, desc=self._description, unit="call", leave=True,
                                 dynamic_ncols=True)
            self._bar.total += n
            self._bar.refresh()

    def done(self, n: int = 1) -> None:
        with self._lock:
            bar = self._bar
            if bar is None:
                return
            bar.update(n)
            if bar.n >= bar.total:
                if self._postfix:
                    bar.set_postfix(self._postfix, refresh=False)
                bar.close()
                self._bar = None

    def set_info(self, **info: str) -> None:
        with self._lock:
            self._postfix.update(info)
            if self._bar is not None:
                self._bar.set_postfix(self._postfix, refresh=False)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
