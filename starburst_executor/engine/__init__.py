"""The engine: the manager thread in its parts.

``loop`` (the thread and its named steps), ``batches`` (form, pickle once, upload),
``dispatch`` (which worker runs what: queue, take over, rerun), ``claims`` (an assigned batch
is revocable until its worker claims it),
``results`` (read the result parts), ``workers`` (launch, assign, watch, stop), ``ledger``
(billed spans, max_cost, usage) and ``intake`` (what the executor hands over).  It sees the
store and the launcher only through their protocols.
"""

from .intake import Intake, WorkItem
from .ledger import Ledger, Usage
from .loop import Manager, Settings

__all__ = ["Intake", "Ledger", "Manager", "Settings", "Usage", "WorkItem"]
