"""The HTTP edge of the error tree: each error's status and headers, in one place.

The domain's errors (:mod:`connector.errors`) carry messages only; here they become the
seed documents' statuses (contract section 4), with ``Retry-After`` where a wait is meant,
and the provider choice is named as the request makes it: the ``X-Provider`` headers.
"""

from __future__ import annotations

from ..errors import (PROVIDER_KEY_OPTION, PROVIDER_OPTION, BadRequest, Conflict, ConnectorError, Forbidden,
                      InsufficientCredits, NotFoundError, PayloadTooLarge, QuotaExceeded, RateLimited,
                      Unauthorized, UpstreamError, worded)

STATUS = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    InsufficientCredits: 403,
    QuotaExceeded: 403,
    NotFoundError: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    RateLimited: 429,
}

UPSTREAM_STATUS = {
    "could_not_process": 400,
    "reported_issue": 400,
    "provider_key_rejected": 401,
    "not_found": 404,
    "not_configured": 500,
    "auth_failed": 500,
    "unexpected": 500,
    "unavailable": 502,
    "invalid_data": 502,
    "fetch_error": 502,
    "rate_limited": 503,
}

HTTP_WORDS = {PROVIDER_OPTION: "X-Provider", PROVIDER_KEY_OPTION: "X-Provider-Key"}


def status_of(exc: ConnectorError) -> int:
    if isinstance(exc, UpstreamError):
        return UPSTREAM_STATUS[exc.kind]
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def headers_of(exc: ConnectorError) -> dict[str, str]:
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, UpstreamError) and exc.kind == "rate_limited":
        return {"Retry-After": str(max(1, int(exc.retry_after or 60)))}
    return {}


def answer(exc: ConnectorError) -> tuple[dict, int, dict[str, str]]:
    """The JSON body, status and headers a caller gets for ``exc``."""
    return {"error": worded(exc.message, HTTP_WORDS)}, status_of(exc), headers_of(exc)
