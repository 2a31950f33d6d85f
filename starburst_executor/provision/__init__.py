"""Provisioning: the AWS side of the ``starburst`` command line, as library functions.

=============  =====================================================================
function       what it does
=============  =====================================================================
``setup``      create or update roles, bucket, repository, cluster, log group,
               security group and the config file (idempotent; ``dry_run``)
``doctor``     check credentials, region, roles, bucket, cluster, network, quotas,
               image and Docker; each failed check names its fix
``status``     sessions with their age and cost so far, and running tasks
``logs``       CloudWatch log events of a session's tasks
``cleanup``    stop orphaned tasks, delete old session data, deregister stale
               task definitions
``teardown``   delete what setup created
``fetch_prices``  current Fargate rates from the AWS Pricing API
=============  =====================================================================

Modules: :mod:`.setup` (with :mod:`.steps`, :mod:`.resources`, :mod:`.policies`), :mod:`.doctor`
(with :mod:`.checks`, :mod:`.network`), :mod:`.sessions` (status, logs), :mod:`.cleanup`
(cleanup, teardown), :mod:`.prices`, and :mod:`.common` that they share.

Every function takes a :class:`Clients` (boto3 clients of one region; a new session by default)
and a ``log`` callable that receives one line per step.
"""

from __future__ import annotations

from .checks import Check, DoctorReport, format_check
from .cleanup import CleanupReport, cleanup, teardown
from .common import Clients, Log, Names, role_name
from .doctor import QuotaReader, doctor
from .prices import fetch_prices
from .sessions import SessionInfo, StatusReport, TaskInfo, logs, parse_duration, status
from .setup import SetupOptions, SetupResult, StepResult, setup

__all__ = [
    "Clients",
    "Log",
    "Names",
    "SetupOptions",
    "SetupResult",
    "StepResult",
    "setup",
    "Check",
    "DoctorReport",
    "QuotaReader",
    "doctor",
    "format_check",
    "CleanupReport",
    "SessionInfo",
    "StatusReport",
    "TaskInfo",
    "cleanup",
    "logs",
    "parse_duration",
    "status",
    "teardown",
    "fetch_prices",
    "role_name",
]
