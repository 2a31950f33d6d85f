"""The doctor's report: one :class:`Check` per line of the checklist, and how a line reads."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Check", "DoctorReport", "format_check", "OK", "WARN", "FAIL", "SKIP", "SETUP"]

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
SETUP = "run `starburst setup`"
"""The fix of most failures."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DoctorReport:
    """Every check, in order; ``ok`` is false when one failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


_MARKS = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]", SKIP: "[skip]"}


def format_check(check: Check) -> str:
    """``[ ok ] name: detail`` and, for a warning or failure, an indented ``fix:`` line."""
    line = f"{_MARKS.get(check.status, check.status)} {check.name}: {check.detail}"
    if check.fix and check.status in (WARN, FAIL):
        line += f"\n       fix: {check.fix}"
    return line
