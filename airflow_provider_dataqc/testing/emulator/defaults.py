"""The emulator's fixed vocabulary: default credentials, messages, operation names, limits.

Everything here is data, importable without starting anything.
"""

from __future__ import annotations

import re

DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"
DEFAULT_WORKSPACE = "ws-dev"
DEFAULT_WORKSPACES = ("ws-dev", "ws-prod")
#: A static IAM token accepted in ``X-Auth-Token`` (besides tokens the emulator issued).
DEFAULT_TOKEN = "emulator-token"
#: IAM user name, password and domain (account) name accepted by ``POST /v3/auth/tokens``.
DEFAULT_USER = ("dq-user", "dq-password", "dq-domain")
#: Access key and secret key accepted for ``SDK-HMAC-SHA256`` signatures.
DEFAULT_AKSK = ("EMULATORAK000000", "EMULATORSK00000000000000000000000000000000")
DEFAULT_DOMAIN_ID = "fedcba9876543210fedcba9876543210"
DEFAULT_REGION = "cn-north-4"

FAILED_MESSAGE = "Emulated failure: rule template 'null_check' references a missing data connection"
TIMEOUT_MESSAGE = "Emulated timeout: the task did not finish within the service's time limit"

#: Operation names used in :class:`RecordedRequest`, :meth:`Emulator.count` and :class:`FaultPlan`.
OPERATIONS = (
    "status",
    "export",
    "upload",
    "import",
    "download",
    "iam",
    "jobs",
    "job",
    "run",
    "instances",
    "results",
    "stop",
    "unknown",
)
#: The quality-job operations: list and detail of jobs, run on demand, instance list, rule
#: results, batch-stop.
JOB_OPERATIONS = ("jobs", "job", "run", "instances", "results", "stop")

#: Resource-ID conventions answered without any set-up: ``<kind>-<N>`` optionally followed
#: by ``-<anything>`` (``success-3-run42``) to keep IDs unique between runs.
CONVENTION_KINDS = ("success", "failed", "timeout", "filefail", "slowfile", "unknown")
CONVENTION = re.compile(r"^(success|failed|timeout|filefail|slowfile|unknown)-(\d{1,9})(?:[-_.].*)?$", re.S)
#: Longest life cycle a convention ID gets (``success-999999999`` is clamped to this).
MAX_CONVENTION_STEPS = 100_000

DEFAULT_EXPORT_SCRIPT: tuple[str, ...] = ("WAITING", "RUNNING", "SUCCESS")
DEFAULT_IMPORT_SCRIPT: tuple[str, ...] = ("RUNNING", "SUCCESS")

#: The DQC code and message of "this resource does not exist" (status, download, import, jobs).
NOT_FOUND_CODE = "DQC.1016"
NOT_FOUND_MESSAGE = "The resource does not exist"
#: HTTP statuses "not found" can be answered with (``Emulator(not_found_status=...)``): 404 (the
#: default), 400, or 500 - the one error answer the status page documents.
NOT_FOUND_STATUSES = (404, 400, 500)

#: New job and run IDs start above this: 19 digits, above 2**53 (9_007_199_254_740_992), so a
#: client that reads them through a float loses digits.
FIRST_JOB_ID = 1_440_764_172_232_400_000
#: The ``run_status`` a run stopped by ``batch-stop`` answers from then on. The reference lists
#: no "stopped" status; SUSPENDING is the documented one nearest to it.
DEFAULT_STOPPED_STATUS = "SUSPENDING"
