"""How one call runs — authentication, the one token refresh, retries — written once.

Pure: no Airflow import, no I/O. :func:`call` is a generator that *describes*
the steps of a call and is driven by a transport: it yields :class:`Send`,
:class:`Sleep`, :class:`Mask` and :class:`Exclusive` actions and is sent back what happened.
The sync hook drives it with ``requests`` and ``time.sleep``; the trigger drives
it with ``aiohttp`` and ``asyncio.sleep``. Neither holds a copy of the policy.

Retry policy
------------
This is the only place that decides whether a call is sent again; the sync hook
and the trigger both follow it.

* Retried: no answer at all (connection refused or reset, connect or read
  timeout, an answer cut short) and HTTP 429, 500, 502, 503 and 504; with
  exponential backoff and full jitter
  (``uniform(0, min(max_wait, backoff_factor * 2**n))`` before retry ``n + 1``),
  or the server's ``Retry-After`` (seconds or an HTTP date, capped at
  ``max_wait``); at most ``max_retries`` times (connection extra ``max_retries``,
  default 3), and a retry is only started if its wait ends within
  ``total_timeout`` seconds (extra ``retry_timeout``, default 300) of the first
  attempt. Each attempt is bounded by the connect timeout (extra
  ``connect_timeout``, 10 s) and as a whole, answer included, by extra ``timeout``
  (30 s; a download by extra ``download_timeout``, 1 h), and never runs past the
  deadline of the wait that makes it. Every retry logs one WARNING:
  attempt n/N, HTTP status or network error, ``error_code``, ``X-Request-Id``
  and the wait.
* Never retried: other statuses (400, 401 after the one token refresh, 403,
  404 ...) and failures waiting cannot fix (a rejected TLS certificate).
* A call that is not idempotent (export, upload, import) is repeated only when
  the service surely did not act on it: the connection was refused or never
  opened, or the answer was 429. After a read timeout, a reset, a TLS error, a
  5xx or an unusable 2xx it may have acted (:func:`may_have_acted`), so the
  failure is reported instead of risking a second export or import — and reported
  as ``DataQCOutcomeUnknownError`` (an ``AirflowFailException``), so Airflow's own
  task retries do not repeat it either.
* Every DQC call first waits for its slot in the user's flow-control budget
  (:mod:`.flow`: ``rate_limit`` calls per 10 s per user and process, halved by a 429,
  recovering as answers come back). A 429 that outlasts the retries is *throttling*:
  waits never count it as a failed poll (:mod:`.wait`).
* ``auth_type="password"``: a 401 drops the cached token, gets a new one and
  repeats the call once; a second 401 is reported.
* A 2xx answer whose body cannot be used (not JSON, not an object, no status: a
  gateway's maintenance page) is not retried by the call, but counts as
  transient (:func:`is_transient`): waits (sensor, trigger) poll again at their
  next interval, up to their ``max_consecutive_errors``, and never read it as a
  success.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from airflow_provider_dataqc.core.api import ApiRequest, iam_token_request
from airflow_provider_dataqc.core.errors import CallFailure, failure_from_answer, header, parse_retry_after, printable
from airflow_provider_dataqc.core.flow import FLOW, flow_key
from airflow_provider_dataqc.core.iam import IamToken, iam_failure, parse_token_answer
from airflow_provider_dataqc.core.prepare import PreparedRequest, prepare
from airflow_provider_dataqc.core.settings import AuthType, ConnectionSettings, RetrySettings
from airflow_provider_dataqc.core.tokens import TOKEN_CACHE, TokenTicket, settle_token, token_cache_key


class Log(Protocol):
    """What the call plan needs of a logger (stdlib and structlog loggers both fit)."""

    def info(self, msg: str, /, *args: Any) -> Any: ...

    def warning(self, msg: str, /, *args: Any) -> Any: ...


#: Statuses that say "try again later".
TRANSIENT_STATUS_CODES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Answer:
    """An HTTP answer. ``body`` is empty for a streamed success; ``streamed`` is then
    what the transport's sink produced (for example a download's size and hash)."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes = b""
    streamed: Any = None
    #: The body was longer than the transport reads for a non-streamed answer and was cut.
    truncated: bool = False


@dataclass(frozen=True)
class NoAnswer:
    """The request got no (complete) answer.

    ``maybe_processed`` is False only when the request surely never reached
    the service (connection refused, name resolution failed). ``permanent`` is
    True when waiting cannot help (a rejected TLS certificate): never retried.
    ``request_id`` is the ``X-Request-Id`` of an answer that was cut short.
    """

    error: str
    maybe_processed: bool = True
    permanent: bool = False
    request_id: str | None = None


@dataclass(frozen=True)
class Send:
    """Send ``request``; reply with an :class:`Answer` or a :class:`NoAnswer`."""

    request: PreparedRequest


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds``; reply with ``None``."""

    seconds: float


@dataclass(frozen=True)
class Mask:
    """Register ``secret`` with the log masker (a new IAM token); reply with ``None``."""

    secret: str = field(repr=False)


@dataclass(frozen=True)
class Exclusive:
    """Run ``plan`` (its actions driven as any others) holding the lock for ``key`` — one
    holder per key in the process, a thread lock in the hook, an ``asyncio.Lock`` in the
    trigger — and reply with what ``plan`` returns."""

    key: tuple[str, ...]
    plan: Generator[Any, Any, Any] = field(repr=False)


Action = Send | Sleep | Mask | Exclusive
CallPlan = Generator[Action, Any, "Answer | CallFailure"]


def is_transient(failure: CallFailure) -> bool:
    """Whether waiting could make ``failure`` go away: no answer (unless ``permanent``),
    429, 500/502/503/504, or a 2xx answer whose body cannot be used (a maintenance page).

    Waits (sensor, trigger) poll again after a transient failure, up to their
    ``max_consecutive_errors``; anything else ends the wait at once.
    """
    if failure.permanent:
        return False
    code = failure.status_code
    return code is None or code in TRANSIENT_STATUS_CODES or 200 <= code < 300


def is_retryable(failure: CallFailure, idempotent: bool) -> bool:
    """Whether the call may be sent again now (see the module docstring): a transient
    failure that is not a 2xx answer, and, for a call that is not idempotent, one the
    service surely did not act on (``not_processed``)."""
    if failure.status_code is not None and 200 <= failure.status_code < 300:
        return False
    return is_transient(failure) and (idempotent or failure.not_processed)


def may_have_acted(failure: CallFailure, idempotent: bool) -> bool:
    """Whether a failed call that is not idempotent may have been carried out anyway: no
    (complete) answer after the request may have gone out, a 5xx, or a 2xx whose body cannot
    be used. Such a call is never sent again — not by the call's retries, and not by a task
    retry (the hook raises ``DataQCOutcomeUnknownError``, which Airflow does not retry)."""
    if idempotent or failure.not_processed or failure.permanent:
        return False
    code = failure.status_code
    return code is None or code >= 500 or 200 <= code < 300


def retry_wait(
    failure: CallFailure,
    *,
    idempotent: bool,
    retries_done: int,
    policy: RetrySettings,
    remaining: float,
    rng: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds to wait before the next attempt, or ``None`` to give up."""
    if retries_done >= policy.max_retries or not is_retryable(failure, idempotent):
        return None
    if failure.retry_after is not None:
        wait = min(failure.retry_after, policy.max_wait)
    else:
        wait = rng(0.0, min(policy.max_wait, policy.backoff_factor * (2**retries_done)))
    return wait if wait <= remaining else None


def call(
    settings: ConnectionSettings,
    request: ApiRequest,
    *,
    log: Log,
    within: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[float, float], float] = random.uniform,
) -> CallPlan:
    """The steps of one call: returns the successful :class:`Answer` or the final :class:`CallFailure`.

    :param within: seconds the caller can wait for the whole call (a wait's deadline): no
        attempt runs and no retry starts past it.
    """
    needs_token = settings.auth_type is AuthType.PASSWORD and not request.iam
    ends_at = clock() + max(within, 0.0) if within is not None else None
    deadline = clock() + settings.retry.total_timeout
    if ends_at is not None:
        deadline = min(deadline, ends_at)
    retries_done = 0
    token: str | None = None
    rejected: str | None = None
    refreshed = False
    budget_key = flow_key(settings)
    while True:
        if needs_token:
            got = yield from obtain_token(settings, rejected, log=log)
            if isinstance(got, CallFailure):
                return got
            token, rejected = got, None
        if not request.iam and settings.rate_limit > 0:
            # The user's flow-control budget (core/flow.py): wait for this call's slot.
            slot = FLOW.reserve(budget_key, settings.rate_limit, clock(), before=ends_at)
            if slot is None:  # no slot before the wait's deadline (none was taken)
                yield Sleep(max(ends_at - clock(), 0.0) if ends_at is not None else 0.0)
                return CallFailure(
                    operation=request.operation,
                    transport_error=(
                        f"no call slot before the wait's deadline (flow-control budget of {settings.rate_limit:g} "
                        "calls per 10 s, extra rate_limit)"
                    ),
                    not_processed=True,
                )
            if slot > 0:
                yield Sleep(slot)
        prepared = prepare(settings, request, token=token)
        if ends_at is not None:  # no attempt outlives the wait that makes it
            left = max(ends_at - clock(), 0.0)
            if prepared.attempt_timeout is None or prepared.attempt_timeout > left:
                prepared = replace(prepared, attempt_timeout=left)
        outcome = yield Send(prepared)
        if isinstance(outcome, Answer):
            if not request.iam:
                FLOW.record(
                    budget_key,
                    settings.rate_limit,
                    clock(),
                    throttled=outcome.status_code == 429,
                    retry_after=parse_retry_after(header(outcome.headers, "Retry-After"))
                    if outcome.status_code == 429
                    else None,
                )
            if 200 <= outcome.status_code < 300:
                return outcome
            if outcome.status_code == 401 and needs_token and not refreshed:
                log.info("DataArts Quality rejected the IAM token (HTTP 401); getting a new one")
                refreshed, rejected = True, token
                continue
            failure = failure_from_answer(request.operation, outcome.status_code, outcome.headers, outcome.body)
            if outcome.status_code == 401 and refreshed:
                failure = replace(failure, problem="credentials rejected again after a fresh IAM token")
        else:
            failure = CallFailure(
                operation=request.operation,
                transport_error=outcome.error,
                not_processed=not outcome.maybe_processed,
                permanent=outcome.permanent,
                request_id=outcome.request_id,
            )
        wait = retry_wait(
            failure,
            idempotent=request.idempotent,
            retries_done=retries_done,
            policy=settings.retry,
            remaining=deadline - clock(),
            rng=rng,
        )
        if wait is None:
            return failure
        retries_done += 1
        log.warning(
            "DataArts Quality %s call: attempt %d/%d failed (%s, error_code=%s, X-Request-Id=%s); retrying in %.1fs",
            request.operation,
            retries_done,
            settings.retry.max_retries + 1,
            f"HTTP {failure.status_code}" if failure.status_code is not None else printable(failure.transport_error),
            failure.error_code or "none",
            failure.request_id or "none",
            wait,
        )
        yield Sleep(wait)


def fetch_token(settings: ConnectionSettings, *, log: Log) -> Generator[Action, Any, IamToken | CallFailure]:
    """The steps of getting a new IAM token for ``auth_type="password"``: the token request
    under the same retry policy, its answer read. A failure names IAM's status and message,
    the user and what to check, never the password."""
    request = iam_token_request(
        user=settings.login or "",
        password=settings.secret or "",
        domain=settings.domain_name or "",
        project_id=settings.project_id,
    )
    outcome = yield from call(settings, request, log=log)
    token = (
        outcome
        if isinstance(outcome, CallFailure)
        else parse_token_answer(outcome.status_code, outcome.headers, outcome.body)
    )
    return iam_failure(settings, token) if isinstance(token, CallFailure) else token


def obtain_token(
    settings: ConnectionSettings, rejected: str | None = None, *, log: Log
) -> Generator[Action, Any, str | CallFailure]:
    """The steps of getting a current IAM token from :data:`~.tokens.TOKEN_CACHE`.

    ``rejected`` is a token the service just refused: it is dropped first. A fresh cached
    token is used as is; otherwise one fetch at a time per key (:class:`Exclusive`), and
    callers that waited for a fetch share its token, or its failure (a wrong password costs
    one IAM request however many calls were waiting).
    """
    ticket = TOKEN_CACHE.ticket(token_cache_key(settings), rejected)
    if ticket.token is not None:
        return ticket.token
    got: str | CallFailure = yield Exclusive(ticket.key, _fetch_or_share(settings, ticket, log=log))
    return got


def _fetch_or_share(settings: ConnectionSettings, ticket: TokenTicket, *, log: Log) -> Generator[Action, Any, Any]:
    shared = TOKEN_CACHE.shared(ticket)
    if shared is not None:
        return shared
    token = yield from fetch_token(settings, log=log)
    if isinstance(token, IamToken):
        yield Mask(token.value)
    return settle_token(ticket.key, token, user=settings.login, log=log)
