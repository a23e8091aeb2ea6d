"""Flow control as DataArts Quality documents it: per-API and per-user request windows.

The API overview documents, per 10 s, 300 requests per API and 40 per user for the DQC calls
(export: 1,800 and 20). Past a limit the API gateway answers HTTP 429 with ``APIGW.0308``
("The throttling threshold has been reached: policy user over ratelimit,limit:40,time:10
second"), with or without ``Retry-After``. "Per user" is per credential identity: the IAM
user a token was issued to, an access key, or a static token.

A throttled request is not counted in the window (the gateway refused it before the service
saw it) and never moves a life cycle. Windows slide: a request is allowed when fewer than
``limit`` requests of its key were allowed in the last ``window`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: Per-API and per-user limits per window, as documented, for operations that differ from the default.
DOCUMENTED_LIMITS: Mapping[str, tuple[int, int]] = {"export": (1800, 20)}
#: Operations the DataArts gateway does not throttle here (IAM is another service).
UNTHROTTLED = frozenset({"iam", "unknown"})
THROTTLE_CODE = "APIGW.0308"


@dataclass
class FlowControl:
    """Limits of the emulator's API gateway.

    :param per_api: requests per ``window`` to one API (operation) from everybody.
    :param per_user: requests per ``window`` to one API from one credential identity.
    :param window: the window, in seconds.
    :param limits: ``operation -> (per_api, per_user)`` for operations with other limits
        (default: the documented export limits).
    :param retry_after: the ``Retry-After`` header of a 429 in seconds; ``None`` sends none
        (the service may not send it); ``0`` sends ``0``.
    :param clock: where "now" comes from (``time.monotonic``); tests may drive it.
    """

    per_api: int = 300
    per_user: int = 40
    window: float = 10.0
    limits: Mapping[str, tuple[int, int]] = field(default_factory=lambda: dict(DOCUMENTED_LIMITS))
    retry_after: float | None = None
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError(f"the flow-control window must be > 0 s, got {self.window!r}")
        for name, (api, user) in {"*": (self.per_api, self.per_user), **dict(self.limits)}.items():
            if api < 1 or user < 1:
                raise ValueError(f"flow-control limits must be >= 1, got {api}/{user} for {name!r}")

    def limits_for(self, operation: str) -> tuple[int, int]:
        """``(per_api, per_user)`` for ``operation``."""
        return self.limits.get(operation, (self.per_api, self.per_user))


@dataclass(frozen=True)
class FlowStats:
    """What the gateway did: requests let through and refused, per API and per identity.

    ``served_by_user`` / ``served_by_api`` count the DataArts requests that passed the
    gateway (authenticated, not throttled), whether flow control is on or not.
    """

    throttled: int
    throttled_by_user: dict[str, int]
    throttled_by_api: dict[str, int]
    served_by_user: dict[str, int]
    served_by_api: dict[str, int]

    @property
    def served(self) -> int:
        return sum(self.served_by_api.values())

    @property
    def throttled_share(self) -> float:
        """429s as a share of all the requests the gateway judged (0 when none)."""
        total = self.served + self.throttled
        return self.throttled / total if total else 0.0


class Gateway:
    """Sliding windows and counters; thread-safe (the emulator serves from a thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._api: dict[str, deque[float]] = {}
        self._user: dict[tuple[str, str], deque[float]] = {}
        self._served_user: Counter[str] = Counter()
        self._served_api: Counter[str] = Counter()
        self._throttled_user: Counter[str] = Counter()
        self._throttled_api: Counter[str] = Counter()

    def admit(self, control: FlowControl | None, operation: str, identity: str) -> str | None:
        """``None`` when the request may pass, else the policy it broke (``"api"`` or ``"user"``)."""
        if operation in UNTHROTTLED:
            return None
        with self._lock:
            if control is not None:
                now = control.clock()
                api_limit, user_limit = control.limits_for(operation)
                api = self._api.setdefault(operation, deque())
                user = self._user.setdefault((identity, operation), deque())
                for times in (api, user):
                    while times and times[0] <= now - control.window:
                        times.popleft()
                broken = "api" if len(api) >= api_limit else "user" if len(user) >= user_limit else None
                if broken is not None:
                    self._throttled_api[operation] += 1
                    self._throttled_user[identity] += 1
                    return broken
                api.append(now)
                user.append(now)
            self._served_api[operation] += 1
            self._served_user[identity] += 1
            return None

    def stats(self) -> FlowStats:
        with self._lock:
            return FlowStats(
                throttled=sum(self._throttled_api.values()),
                throttled_by_user=dict(self._throttled_user),
                throttled_by_api=dict(self._throttled_api),
                served_by_user=dict(self._served_user),
                served_by_api=dict(self._served_api),
            )

    def reset_counts(self) -> None:
        """Forget the counters (the windows stay: they are the gateway's state, not a record)."""
        with self._lock:
            for store in (self._served_user, self._served_api, self._throttled_user, self._throttled_api):
                store.clear()


def throttle_message(control: FlowControl, operation: str, policy: str) -> str:
    """The gateway's wording of a 429 for ``policy`` (``"user"`` or ``"api"``)."""
    api_limit, user_limit = control.limits_for(operation)
    limit = user_limit if policy == "user" else api_limit
    return (
        f"The throttling threshold has been reached: policy {policy} over ratelimit,"
        f"limit:{limit},time:{control.window:g} second"
    )
