"""The errors the provider raises.

* :class:`DataQCApiError` — a DataArts Quality call failed, or answered something that
  cannot be used (also raised for anything else that stops a call, such as a connection
  whose fields are wrong).
* :class:`DataQCInvalidArgumentError` — an argument given to the hook or an operator is
  wrong; raised before any request. It is both a ``DataQCApiError`` (so existing
  ``except DataQCApiError`` keeps catching it) and a ``ValueError`` (so a DAG author can
  tell "I passed a bad value" apart from "the service failed").
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_dataqc.core.calls import is_transient, may_have_acted
from airflow_provider_dataqc.core.errors import CallFailure

__all__ = ["DataQCApiError", "DataQCInvalidArgumentError", "DataQCOutcomeUnknownError"]


class DataQCApiError(AirflowException):
    """A DataArts Quality call failed, or answered something that cannot be used.

    :ivar status_code: HTTP status, or ``None`` when no answer came.
    :ivar error_code: the service's ``error_code`` (``DQC.*``, ``APIGW.*``), if any.
    :ivar error_msg: the service's ``error_msg``, if any.
    :ivar request_id: the answer's ``X-Request-Id`` (support asks for it).
    :ivar transient: whether waiting could make it go away (no answer, 429, 5xx,
        or a 2xx answer that is not usable, such as a gateway's maintenance page).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        error_msg: str | None = None,
        request_id: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        # AirflowException declares status_code for the REST API; here it is the DQC answer's.
        self.status_code = status_code  # type: ignore[assignment]
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id
        self.transient = transient

    @classmethod
    def from_failure(cls, failure: CallFailure, *, idempotent: bool = True) -> DataQCApiError:
        """The error for a failed call; :class:`DataQCOutcomeUnknownError` when a call that is not
        idempotent may have been carried out all the same."""
        if may_have_acted(failure, idempotent):
            return DataQCOutcomeUnknownError(
                f"{failure.message()}. DataArts Quality may have carried out this {failure.operation} before "
                f"the answer was lost: check the workspace (its {failure.operation} tasks, and the status of any "
                "new resource_id) before running it again. Not retried, also not by the task's retries.",
                status_code=failure.status_code,
                error_code=failure.error_code,
                error_msg=failure.error_msg,
                request_id=failure.request_id,
                transient=is_transient(failure),
            )
        return cls(
            failure.message(),
            status_code=failure.status_code,
            error_code=failure.error_code,
            error_msg=failure.error_msg,
            request_id=failure.request_id,
            transient=is_transient(failure),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.__dict__))


class DataQCInvalidArgumentError(DataQCApiError, ValueError):
    """An argument is wrong (a resource ID, a workspace, a strategy, a mapping ...): the
    message names it and says what is allowed. Raised before any request is sent."""


class DataQCOutcomeUnknownError(DataQCApiError, AirflowFailException):
    """A call that is not idempotent (export, upload, import) failed after the service may have
    acted on it (no answer, a 5xx, an unusable 2xx). Never repeated — Airflow does not retry an
    ``AirflowFailException`` — so a retrying DAG does not start a second export or import."""


def _rebuild(kind: type[DataQCApiError], message: str, state: dict[str, Any]) -> DataQCApiError:
    error = kind(message)
    error.__dict__.update(state)
    return error
