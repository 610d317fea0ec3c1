"""The HTTP edge of the error tree: each error's status and headers, in one place.

The domain's errors (:mod:`connector.errors`) carry a message and a kind; here the kind's
status from :data:`connector.errors.ERROR_KINDS` (the seed documents', contract section 4)
answers, with ``Retry-After`` where a wait is meant,
and the provider choice is named as the request makes it: the ``X-Provider`` headers.
"""

from __future__ import annotations

from ..errors import (ERROR_KINDS, PROVIDER_KEY_OPTION, PROVIDER_OPTION, UPSTREAM_KINDS, BadRequest, Conflict,
                      ConnectorError, Forbidden, InsufficientCredits, NotFoundError, PayloadTooLarge, QuotaExceeded,
                      RateLimited, Unauthorized, UpstreamError, worded)

# The statuses of connector.errors.ERROR_KINDS, by error class and by upstream kind.
STATUS = {cls: ERROR_KINDS[cls.kind].status for cls in (BadRequest, Unauthorized, Forbidden, InsufficientCredits,
                                                         QuotaExceeded, NotFoundError, Conflict, PayloadTooLarge,
                                                         RateLimited)}
UPSTREAM_STATUS = {kind: ERROR_KINDS[kind].status for kind in UPSTREAM_KINDS}

HTTP_WORDS = {PROVIDER_OPTION: "X-Provider", PROVIDER_KEY_OPTION: "X-Provider-Key"}


def status_of(exc: ConnectorError) -> int:
    return ERROR_KINDS[exc.kind].status


def headers_of(exc: ConnectorError) -> dict[str, str]:
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, UpstreamError) and exc.kind == "rate_limited":
        return {"Retry-After": str(max(1, int(exc.retry_after or 60)))}
    return {}


def answer(exc: ConnectorError) -> tuple[dict, int, dict[str, str]]:
    """The JSON body, status and headers a caller gets for ``exc``."""
    return {"error": worded(exc.message, HTTP_WORDS)}, status_of(exc), headers_of(exc)
