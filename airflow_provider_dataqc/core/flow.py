"""Keeping within DataArts Quality's flow control: one budget of calls per user, per process.

Pure: no Airflow import, no I/O (a thread lock guards the budgets' own state; nothing waits
while holding it). DataArts Quality's API gateway allows a user 40 calls per 10 s to each
API (export: 20) and answers 429 (``APIGW.0308``) past that, often without ``Retry-After``.

Policy
------
* Every call of a process for one (endpoint, project, credential identity) — the identity,
  never the secret — draws from one :class:`Budget`: calls are spaced evenly at
  :data:`HEADROOM` of the connection's ``rate_limit`` (calls per 10 s, default 40; 0: off),
  in the order they asked, so no wait starves and waits that start together spread out.
  The call plan (:func:`airflow_provider_dataqc.core.calls.call`) sleeps for the slot it
  is given: in the hook a thread sleeps, in the trigger a coroutine awaits; nothing blocks.
* A 429 halves the budget's rate (not below :data:`MIN_CALLS_PER_WINDOW` per 10 s) and
  pauses it for ``Retry-After`` when the answer has one, else for two of the new slots;
  every answer that is not a 429 gives back ``rate_limit / 20`` per 10 s, up to the full
  rate: congestion control, so one process backs off for the user's other tools too.
* The budget is per process: workers and triggerers each keep their own, and the 429s
  they cause slow each of them down in turn.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from airflow_provider_dataqc.core.settings import ConnectionSettings

#: The gateway counts calls per this many seconds.
WINDOW_SECONDS = 10.0
#: Share of the documented rate a process uses: room for clock differences and other tools.
HEADROOM = 0.9
#: The rate a run of 429s never pushes the budget below, in calls per window.
MIN_CALLS_PER_WINDOW = 1.0
#: Share of the full rate given back per answer that was not throttled.
RECOVERY_SHARE = 0.05


@dataclass
class Budget:
    """The spacing of one user's calls. All times on the caller's monotonic clock."""

    limit: float
    rate: float = 0.0
    next_free: float = 0.0
    paused_until: float = 0.0
    throttled: int = 0

    def __post_init__(self) -> None:
        self.rate = self.rate or self.full_rate

    @property
    def full_rate(self) -> float:
        return max(self.limit * HEADROOM, MIN_CALLS_PER_WINDOW)

    @property
    def interval(self) -> float:
        """Seconds between two calls at the current rate."""
        return WINDOW_SECONDS / self.rate

    def reserve(self, now: float, before: float | None = None) -> float | None:
        """Take the next free slot: how long to wait before sending; ``None`` (and no slot taken)
        when it would start after ``before``."""
        start = max(now, self.next_free, self.paused_until)
        if before is not None and start > before:
            return None
        self.next_free = start + self.interval
        return start - now

    def on_throttled(self, now: float, retry_after: float | None) -> None:
        self.throttled += 1
        self.rate = max(self.rate / 2, MIN_CALLS_PER_WINDOW)
        pause = retry_after if retry_after is not None else 2 * self.interval
        self.paused_until = max(self.paused_until, now + pause)

    def on_answer(self) -> None:
        self.rate = min(self.rate + self.full_rate * RECOVERY_SHARE, self.full_rate)


class FlowControl:
    """The budgets of this process, one per (endpoint, project, identity)."""

    def __init__(self) -> None:
        self._budgets: dict[tuple[str, ...], Budget] = {}
        self._guard = threading.Lock()

    def _budget(self, key: tuple[str, ...], limit: float) -> Budget:
        budget = self._budgets.get(key)
        if budget is None or budget.limit != limit:
            budget = self._budgets[key] = Budget(limit)
        return budget

    def reserve(self, key: tuple[str, ...], limit: float, now: float, before: float | None = None) -> float | None:
        """Seconds to wait before the next call for ``key`` (0 when ``limit`` is 0: off), or ``None``
        when no slot starts by ``before`` (then none is taken: others keep their turn)."""
        if limit <= 0:
            return 0.0
        with self._guard:
            return self._budget(key, limit).reserve(now, before)

    def record(
        self, key: tuple[str, ...], limit: float, now: float, *, throttled: bool, retry_after: float | None
    ) -> None:
        """Tell the budget how the call was answered (429 or not)."""
        if limit <= 0:
            return
        with self._guard:
            budget = self._budget(key, limit)
            if throttled:
                budget.on_throttled(now, retry_after)
            else:
                budget.on_answer()

    def snapshot(self, key: tuple[str, ...]) -> Budget | None:
        """A copy of the budget for ``key`` (for tests and benchmarks)."""
        with self._guard:
            budget = self._budgets.get(key)
            return None if budget is None else Budget(**vars(budget))

    def clear(self) -> None:
        with self._guard:
            self._budgets.clear()


#: The budgets every hook and trigger of this process draws from.
FLOW = FlowControl()

_KEY_SALT = secrets.token_bytes(16)


def flow_key(settings: ConnectionSettings) -> tuple[str, ...]:
    """Whose budget a call draws from: the endpoint, the project and the credential's
    identity — the user or Access Key, or for an IAM token a salted digest of it (the token
    stands for one user); never a secret itself."""
    if settings.login:
        identity = f"login:{settings.login}"
    else:
        digest = hmac.new(_KEY_SALT, (settings.secret or "").encode("utf-8"), hashlib.sha256).hexdigest()
        identity = f"token:{digest}"
    return (settings.endpoint, settings.project_id, identity)
