"""One step of ``starburst setup``: what it works on, and how it reports what it did."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .common import Clients, Log, Names

if TYPE_CHECKING:
    from .setup import SetupOptions

__all__ = ["Context", "StepResult", "CREATED", "UPDATED", "UNCHANGED"]

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One step: what it is about, what happened (or would happen) and the documents it uses."""

    step: str
    resource: str
    action: str  # created / updated / unchanged, or "would create" / "would update"
    details: tuple[str, ...] = ()
    documents: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.action != UNCHANGED


class Context:
    """What every step of setup needs: clients, names, options, and how to report."""

    def __init__(self, clients: Clients, names: Names, options: SetupOptions, dry_run: bool,
                 log: Log) -> None:
        self.clients = clients
        self.names = names
        self.options = options
        self.dry_run = dry_run
        self.log = log
        self.kms_key_arn: str | None = None  # the session data's KMS key, once resolved

    def result(self, step: str, resource: str, changes: list[str], created: bool,
               documents: Mapping[str, Any] | None = None) -> StepResult:
        if created:
            action = CREATED
        elif changes:
            action = UPDATED
        else:
            action = UNCHANGED
        if self.dry_run and action != UNCHANGED:
            action = "would " + action[:-1]  # "would create", "would update"
        result = StepResult(step, resource, action, tuple(changes), dict(documents or {}))
        suffix = f": {'; '.join(changes)}" if changes and not created else ""
        self.log(f"  {step:<16} {resource}  [{action}]{suffix}")
        return result
