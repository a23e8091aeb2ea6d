"""How a wait goes — what each poll means, when the wait ends, and the event it ends with — written once.

Pure: no Airflow import, no I/O. A :class:`Wait` is told what each poll brought
(:meth:`Wait.on_answer` for a usable answer, :meth:`Wait.on_error` for a failed call)
or that its time is up (:meth:`Wait.on_deadline`), and answers :class:`Keep` (log
this line, poll again) or :class:`Finish` (the end, as an event). It is driven by:

* the sensor's ``poke`` (one poll per poke) and the deferrable sensor's first poke,
* :meth:`DataQCHook.wait_for_resource` and the operators that wait (a loop with ``time.sleep``),
* the trigger (a loop with ``asyncio.sleep``).

What a poll's answer *means* is a :class:`Rules` object: :class:`ResourceStatusRules` for an
import/export task; another kind of wait is another set of rules, never another loop.

Waiting policy
--------------
* A usable answer resets the count of failed polls and is judged by the rules: success
  and failure end the wait; anything else keeps it going (a WARNING for an answer the
  documentation does not list).
* A throttled poll (HTTP 429 after the call's own retries) is the service saying "slower":
  it keeps the wait going, counts nothing toward ``max_consecutive_errors``, and only the
  deadline ends a wait that stays throttled (its message says how often it was).
* A failed poll whose error is transient (no answer, 5xx, a 2xx that is not usable,
  after the call's own retries) keeps the wait going until ``max_consecutive_errors``
  polls in a row have failed; then, or at once for a permanent error, the wait ends
  with an ``error`` event carrying the last error.
* The deadline (the sensor's ``timeout``, the trigger's ``end_time``) ends the wait with a
  ``timeout`` event naming the last state seen.

Events
------
Every wait ends with exactly one event, a JSON-able dict: ``status`` (one of
:data:`EVENT_KINDS`), ``message``, the rules' subject fields (``resource_id``), and
``record`` (``success``, ``failed``; the last seen for ``timeout``), ``error``
(``error``: ``status_code``, ``error_code``, ``error_msg``, ``request_id``, ``transient``)
and ``result`` (what an operator returns once the wait succeeded, if it said). Events
come back from the metadata database after a deferral: :func:`read_event` is the one
check they pass before anything acts on them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any, Protocol

from airflow_provider_dataqc.core.errors import printable
from airflow_provider_dataqc.core.status import Outcome, ResourceStatus, StatusPayloadError, assess

EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
#: The ``status`` values an event may have; :func:`read_event` refuses any other.
EVENT_KINDS = frozenset({EVENT_SUCCESS, EVENT_FAILED, EVENT_TIMEOUT, EVENT_ERROR})
#: A deferral's own timeout is a backstop (no triggerer running): it ends this much after the
#: trigger's ``end_time``, so the trigger's timeout event (with the last state seen) normally wins.
#: On Airflow 2 the backstop's TaskDeferralTimeout is retried; AirflowSensorTimeout never is.
DEFERRAL_TIMEOUT_GRACE = timedelta(minutes=2)
#: The fields of an event's ``error`` (those of ``DataQCApiError``).
ERROR_FIELDS = ("status_code", "error_code", "error_msg", "request_id", "transient")


class Level(str, Enum):
    """The log level a driver writes a :class:`Keep` or :class:`Finish` line at."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Judgement:
    """What the rules make of one usable answer."""

    outcome: Outcome
    message: str
    #: The record kept in events and XCom (JSON-able).
    record: dict[str, Any]
    #: The state a quiet wait compares to tell whether something changed.
    state: tuple[Any, ...] = ()
    #: An answer the documentation does not list: logged at WARNING.
    unusual: bool = False


class Rules(Protocol):
    """One kind of wait: what is waited for and what its answers mean."""

    @property
    def subject(self) -> dict[str, Any]:
        """The fields naming what is waited for, put in every event (``{"resource_id": ...}``)."""
        ...

    @property
    def label(self) -> str:
        """What is waited for, in words, for messages."""
        ...

    def judge(self, answer: Any) -> Judgement: ...

    def reread(self, record: Any) -> Any:
        """The answer an event's ``record`` stands for; raises ``ValueError`` when it is not one."""
        ...

    def last_seen(self, record: Mapping[str, Any]) -> str:
        """The state a record shows, in words, for a ``timeout`` message."""
        ...


@dataclass(frozen=True)
class ResourceStatusRules:
    """Waiting for an import/export task: SUCCESS succeeds (with ``wait_for_file``, once the
    file is GENERATED), FAILED/TIMEOUT fail (and a lost file), everything else waits."""

    resource_id: str
    wait_for_file: bool = False

    @property
    def subject(self) -> dict[str, Any]:
        return {"resource_id": self.resource_id}

    @property
    def label(self) -> str:
        return f"DataArts Quality task {self.resource_id!r}"

    def judge(self, answer: ResourceStatus) -> Judgement:
        verdict = assess(answer, wait_for_file=self.wait_for_file)
        return Judgement(
            verdict.outcome,
            verdict.message,
            answer.to_dict(),
            state=(answer.status, answer.file_status),
            unusual=verdict.unknown_status,
        )

    def reread(self, record: Any) -> ResourceStatus:
        request_id = record.get("request_id") if isinstance(record, Mapping) else None
        return ResourceStatus.from_api(record, request_id=request_id)

    def last_seen(self, record: Mapping[str, Any]) -> str:
        return f"status={printable(record.get('status'))}, file_status={printable(record.get('file_status'))}"


@dataclass(frozen=True)
class PollError:
    """A failed poll, as the wait needs to know it (read off a ``DataQCApiError``)."""

    message: str
    transient: bool = False
    status_code: int | None = None
    error_code: str | None = None
    error_msg: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, error: BaseException) -> PollError:
        """Read a raised error: ``DataQCApiError``'s fields when it has them."""
        return cls(
            message=str(error) or type(error).__name__,
            transient=bool(getattr(error, "transient", False)),
            status_code=getattr(error, "status_code", None),
            error_code=getattr(error, "error_code", None),
            error_msg=getattr(error, "error_msg", None),
            request_id=getattr(error, "request_id", None),
        )

    @property
    def throttled(self) -> bool:
        """The gateway's flow control said "slower" (HTTP 429, ``APIGW.0308``): never a failure."""
        return self.status_code == 429 or (self.error_code or "").upper().startswith("APIGW.0308")

    def detail(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ERROR_FIELDS}


@dataclass(frozen=True)
class Keep:
    """Keep waiting: log ``message`` at ``level`` and poll again."""

    message: str
    level: Level = Level.INFO


@dataclass(frozen=True)
class Finish:
    """The wait is over: ``event`` is its one event; ``log`` is the line a driver writes."""

    event: dict[str, Any]
    level: Level
    log: str

    @property
    def kind(self) -> str:
        return str(self.event["status"])


class Wait:
    """The state of one wait (kept small: thousands of them sleep at once in a triggerer).

    :param rules: what the answers mean.
    :param max_consecutive_errors: transient failed polls in a row that end the wait.
    :param consecutive_errors: failed polls in a row already counted (before a deferral).
    :param poll_interval: seconds to the next poll, for messages (``None``: "the next interval").
    :param quiet: log a still-waiting answer at INFO only when its state changes (and at least
        every :attr:`INFO_EVERY_SECONDS`), else at DEBUG — for the trigger, which polls on and on
        in one log; a sensor's pokes each log one INFO line.
    :param keep_last: remember the last record, for the ``timeout`` event.
    :param result: put in the ``success`` event (an operator's return value).
    """

    INFO_EVERY_SECONDS = 600.0

    __slots__ = (
        "_clock",
        "_last_poll",
        "_stretch_told",
        "_told",
        "_told_at",
        "errors",
        "keep_last",
        "last_record",
        "max_errors",
        "poll_interval",
        "quiet",
        "result",
        "rules",
        "throttles",
    )

    def __init__(
        self,
        rules: Any,
        *,
        max_consecutive_errors: int = 3,
        consecutive_errors: int = 0,
        poll_interval: float | None = None,
        quiet: bool = False,
        keep_last: bool = True,
        result: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.max_errors = max(int(max_consecutive_errors), 1)
        self.errors = max(int(consecutive_errors), 0)
        self.poll_interval = poll_interval
        self.quiet = quiet
        self.keep_last = keep_last
        self.result = result
        self.last_record: dict[str, Any] | None = None
        self.throttles = 0
        self._last_poll: float | None = None
        self._stretch_told = False
        self._clock = clock
        self._told: tuple[Any, ...] | None = None
        self._told_at = 0.0

    def _event(self, kind: str, message: str, **fields: Any) -> dict[str, Any]:
        return {**self.rules.subject, "status": kind, "message": message, **fields}

    def on_answer(self, answer: Any) -> Keep | Finish:
        """A usable answer came: judge it."""
        self.errors = 0
        judged = self.rules.judge(answer)
        if judged.outcome is Outcome.SUCCESS:
            event = self._event(EVENT_SUCCESS, judged.message, record=judged.record)
            if self.result is not None:
                event["result"] = self.result
            return Finish(event, Level.INFO, judged.message)
        if judged.outcome is Outcome.FAILED:
            return Finish(self._event(EVENT_FAILED, judged.message, record=judged.record), Level.ERROR, judged.message)
        if self.keep_last:
            self.last_record = judged.record
        if judged.unusual:
            return Keep(judged.message, Level.WARNING)
        return Keep(judged.message, Level.INFO if self._worth_telling(judged.state) else Level.DEBUG)

    def on_error(self, error: PollError) -> Keep | Finish:
        """A poll failed (after the call's own retries). Throttling is not a failure: it neither
        counts toward ``max_consecutive_errors`` nor ends the wait; only the deadline does."""
        if error.throttled:
            self.throttles += 1
            return Keep(
                f"{self.rules.label}: DataArts Quality's flow control throttled the poll (HTTP 429, "
                f"{self.throttles} time(s) in this wait); polling again later: {error.message}",
                Level.WARNING,
            )
        self.errors += 1
        if error.transient and self.errors < self.max_errors:
            when = f"in {self.poll_interval:g}s" if self.poll_interval is not None else "at the next interval"
            return Keep(
                f"Poll {self.errors}/{self.max_errors} of {self.rules.label} failed, polling again {when}: "
                f"{error.message}",
                Level.WARNING,
            )
        if error.transient and self.errors > 1:
            message = f"gave up after {self.errors} failed polls in a row: {error.message}"
        else:
            message = error.message
        event = self._event(EVENT_ERROR, message, error=error.detail())
        return Finish(event, Level.ERROR, f"Giving up on {self.rules.label}: {message}")

    def on_fatal(self, error: PollError) -> Finish:
        """An error that ends the wait whatever the count (the connection cannot be read)."""
        event = self._event(EVENT_ERROR, error.message, error=error.detail())
        return Finish(event, Level.ERROR, f"Giving up on {self.rules.label}: {error.message}")

    def on_deadline(self, reason: str = "the timeout passed") -> Finish:
        """The wait's time is up."""
        last = self.last_record
        seen = f"; last seen: {self.rules.last_seen(last)}" if last else ""
        throttled = f"; throttled by DataArts Quality's flow control {self.throttles} time(s)" if self.throttles else ""
        message = f"Stopped waiting for {self.rules.label}: {reason}{seen}{throttled}"
        return Finish(self._event(EVENT_TIMEOUT, message, record=last), Level.ERROR, message)

    def note_poll(self, now: float) -> str | None:
        """Call as each poll starts: once, when polls have come further apart than asked
        (a shared flow-control budget stretches them), the line that says so; else ``None``."""
        last, self._last_poll = self._last_poll, now
        if self._stretch_told or last is None or self.poll_interval is None:
            return None
        gap = now - last
        if gap <= max(1.5 * self.poll_interval, self.poll_interval + 1.0):
            return None
        self._stretch_told = True
        return (
            f"Polls of {self.rules.label} come {gap:.1f}s apart, not every {self.poll_interval:g}s: the "
            "user's flow-control budget (connection extra rate_limit) is shared by every wait of this process"
        )

    def _worth_telling(self, state: tuple[Any, ...]) -> bool:
        if not self.quiet:
            return True
        now = self._clock()
        if state != self._told or now - self._told_at >= self.INFO_EVERY_SECONDS:
            self._told, self._told_at = state, now
            return True
        return False


#: A trigger's first poll waits at least this many times Airflow 3's
#: ``[workers] min_heartbeat_interval`` after the deferral (see :func:`first_poll_delay`).
RACE_MARGIN = 1.2


def first_poll_delay(
    poll_interval: float, rng: Callable[[float, float], float] = random.uniform, *, not_before: float = 0.0
) -> float:
    """How long a trigger waits before its first poll, when the deferring task has just polled:
    a random share (half to all) of the interval, so that waits deferring together spread out,
    and never less than ``not_before``.

    ``not_before`` keeps the first poll, and so an event for a task that is already done, out of
    the seconds right after the deferral: Airflow 3's task supervisor notices the deferring
    task's exit up to ``[workers] min_heartbeat_interval`` late, and an event inside that window
    meets a scheduler race that fails or retries the task (measured in a real deployment:
    12 of 240 short deferrals hit with the first poll at 0.5-1.0 s, none of 240 at 6 s or
    more; see the README).
    Callers pass :data:`RACE_MARGIN` times that setting."""
    return max(rng(0.5, 1.0) * max(float(poll_interval), 0.0), max(float(not_before), 0.0))


class InvalidEventError(ValueError):
    """An event that cannot be trusted: unknown kind, wrong subject, or a record that
    does not say what the event claims."""


@dataclass(frozen=True)
class Event:
    """A checked event (see :func:`read_event`)."""

    kind: str
    message: str
    record: dict[str, Any] | None = None
    error: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    #: The rules' judgement of ``record`` (``success`` and ``failed``).
    judged: Judgement | None = None


def read_event(event: Any, rules: Any) -> Event:
    """Check an event before it is trusted (it comes back from the metadata database).

    Its ``status`` must be one of :data:`EVENT_KINDS` and its subject the rules'; a
    ``success`` or ``failed`` event's record is judged again and must say the same.

    :raises InvalidEventError: naming what is wrong (and quoting at most 300 characters).
    """
    if not isinstance(event, Mapping) or event.get("status") not in EVENT_KINDS:
        raise InvalidEventError(f"unexpected trigger event for {rules.label}: {event!r:.300}")
    for name, value in rules.subject.items():
        if name in event and str(event[name]) != str(value):
            raise InvalidEventError(f"trigger event for {name}={event[name]!r:.80}, not for {rules.label}")
    kind, message = str(event["status"]), str(event.get("message") or "")
    error = event.get("error")
    checked = Event(kind, message, error=dict(error) if isinstance(error, Mapping) else {}, result=event.get("result"))
    record = event.get("record")
    if kind in (EVENT_SUCCESS, EVENT_FAILED):
        try:
            judged = rules.judge(rules.reread(record))
        except (StatusPayloadError, ValueError, TypeError) as err:
            raise InvalidEventError(f"trigger event without a usable record ({err}): {event!r:.300}") from None
        expected = Outcome.SUCCESS if kind == EVENT_SUCCESS else Outcome.FAILED
        if judged.outcome is not expected:
            raise InvalidEventError(f"trigger event {kind!r} does not match its record: {message}")
        return Event(
            kind, message, dict(record) if isinstance(record, Mapping) else {}, checked.error, checked.result, judged
        )
    if kind == EVENT_TIMEOUT and isinstance(record, Mapping):
        return Event(kind, message, dict(record), checked.error, checked.result)
    return checked
