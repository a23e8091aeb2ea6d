"""Driving the core wait engine in a worker process, and ending a wait the Airflow way.

:func:`poll` makes one poll and logs what the engine says (the sensor's ``poke``);
:func:`wait_here` polls until the wait is over (``DataQCHook.wait_for_resource`` and the
operators that wait without deferring); :func:`conclude` turns the end of a wait — in this
process or an event back from the trigger — into a return value or the exception Airflow
acts on. The policy itself is :mod:`airflow_provider_dataqc.core.wait`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout, conf

from airflow_provider_dataqc.core.wait import (
    EVENT_ERROR,
    EVENT_FAILED,
    EVENT_SUCCESS,
    RACE_MARGIN,
    Event,
    Finish,
    Keep,
    PollError,
    Wait,
    first_poll_delay,
    read_event,
)
from airflow_provider_dataqc.exceptions import DataQCApiError


def first_trigger_poll(poll_interval: float) -> float:
    """Seconds a trigger waits before its first poll after this task defers: half to all of
    ``poll_interval``, and at least :data:`~airflow_provider_dataqc.core.wait.RACE_MARGIN` times
    ``[workers] min_heartbeat_interval`` (a setting of Airflow 3's task supervisor; 0 where it
    does not exist)."""
    try:
        heartbeat = conf.getfloat("workers", "min_heartbeat_interval", fallback=0.0)
    except ValueError:  # not a number: Airflow's own supervisor refuses it too
        heartbeat = 0.0
    return first_poll_delay(poll_interval, not_before=RACE_MARGIN * max(heartbeat, 0.0))


def poll(wait: Wait, fetch: Callable[[], Any], log: Any) -> Finish | None:
    """One poll, judged and logged: ``None`` to keep waiting, or how the wait ended.

    :raises DataQCApiError: the poll's own error, when it ends the wait (permanent, or
        the last of ``max_consecutive_errors`` transient ones), logged at ERROR first.
    """
    try:
        answer = fetch()
    except DataQCApiError as err:
        step = wait.on_error(PollError.of(err))
        if isinstance(step, Finish):
            log.error("%s", step.log)
            raise
    else:
        step = wait.on_answer(answer)
    if isinstance(step, Keep):
        getattr(log, step.level.value)("%s", step.message)
        return None
    return step


def wait_here(
    wait: Wait,
    fetch: Callable[[], Any],
    *,
    poll_interval: float,
    timeout: float | None,
    log: Any,
    polled: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Finish:
    """Poll every ``poll_interval`` seconds until the wait ends or ``timeout`` seconds pass.

    :param polled: the first poll was made already (sleep before the next one).
    :raises DataQCApiError: as :func:`poll`.
    """
    deadline = clock() + timeout if timeout is not None else None
    while True:
        if polled:
            if deadline is not None and clock() >= deadline:
                return wait.on_deadline(f"it did not finish within {timeout:g}s")
            remaining = deadline - clock() if deadline is not None else poll_interval
            sleep(max(min(poll_interval, remaining), 0.0))
        stretched = wait.note_poll(clock())
        if stretched:
            log.info("%s", stretched)
        finish = poll(wait, fetch, log)
        if finish is not None:
            return finish
        polled = True


def conclude(event: Any, rules: Any, log: Any) -> Event:
    """The end of a wait, as Airflow acts on it: the checked event when it succeeded.

    ``event`` is a :class:`Finish` of this process or an event back from the trigger
    (checked by :func:`~airflow_provider_dataqc.core.wait.read_event` first).

    :raises AirflowFailException: the awaited task or run failed (never retried).
    :raises AirflowSensorTimeout: the wait's time ran out.
    :raises DataQCApiError: the wait ended on an error (the service's fields kept).
    :raises AirflowException: an event that cannot be trusted.
    """
    from airflow.providers.common.compat.sdk import AirflowException

    try:
        checked = read_event(event.event if isinstance(event, Finish) else event, rules)
    except ValueError as err:
        raise AirflowException(str(err)) from None
    if checked.kind == EVENT_SUCCESS:
        log.info("%s", checked.judged.message if checked.judged else checked.message)
        return checked
    if checked.kind == EVENT_FAILED:
        message = checked.judged.message if checked.judged else checked.message
        log.error("%s", message)
        raise AirflowFailException(message)
    if checked.kind == EVENT_ERROR:
        log.error("Waiting for %s failed: %s", rules.label, checked.message)
        detail = checked.error
        raise DataQCApiError(
            checked.message,
            status_code=detail.get("status_code"),
            error_code=detail.get("error_code"),
            error_msg=detail.get("error_msg"),
            request_id=detail.get("request_id"),
            transient=bool(detail.get("transient")),
        )
    log.error("%s", checked.message)
    raise AirflowSensorTimeout(checked.message)
