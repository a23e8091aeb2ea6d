"""Former home of request preparation, IAM token parsing and the token cache.

Kept so that existing imports keep working; each piece now lives in a module named for it:
:mod:`.prepare` (URL, headers, authentication), :mod:`.iam` (IAM tokens and login errors),
:mod:`.tokens` (the process-wide token cache).
"""

from __future__ import annotations

from airflow_provider_dataqc.core.iam import (
    TOKEN_REFRESH_MARGIN,
    IamToken,
    iam_failure,
    parse_token_answer,
    refresh_margin,
)
from airflow_provider_dataqc.core.prepare import USER_AGENT, PreparedRequest, prepare
from airflow_provider_dataqc.core.tokens import TOKEN_CACHE, TokenCache, TokenTicket, settle_token, token_cache_key

__all__ = [
    "TOKEN_CACHE",
    "TOKEN_REFRESH_MARGIN",
    "USER_AGENT",
    "IamToken",
    "PreparedRequest",
    "TokenCache",
    "TokenTicket",
    "iam_failure",
    "parse_token_answer",
    "prepare",
    "refresh_margin",
    "settle_token",
    "token_cache_key",
]
