"""Every error a caller can see, and the one table that gives each its status.

    ConnectorError                 status + user-facing message (never a secret, never a traceback)
     ├── BadRequest          400   malformed JSON, wrong types, unknown fields, bad handles
     │    └── InvalidCursor          a cursor the chosen provider cannot page from
     ├── Unauthorized        401   missing, unknown or revoked caller key
     ├── InsufficientCredits 403   the caller key cannot pay for the request
     ├── QuotaExceeded       403   the caller key holds as many hooks or watched accounts as allowed
     ├── NotFoundError       404   unknown route or resource
     ├── Conflict            409   the resource changed underneath the request; try again
     ├── RateLimited         429   the caller key is over its per-minute limit (carries Retry-After)
     └── UpstreamError             the data provider failed; its ``kind`` picks the status
                                   from UPSTREAM_STATUS and the message from the action's manifest

Providers raise :class:`UpstreamError` with a kind and an internal ``detail`` for the logs;
the route turns it into the seed document's status and message for that action.

Where a seed document fixes a message, a caller's message starts with the seed's words and
adds, in a second sentence, what to fix. :func:`redact` and :class:`RedactingFilter` keep
credentials (and SQL parameters) out of logs.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = [
    "ConnectorError",
    "BadRequest",
    "Unauthorized",
    "InsufficientCredits",
    "NotFoundError",
    "QuotaExceeded",
    "Conflict",
    "RateLimited",
    "InvalidCursor",
    "UpstreamError",
    "UPSTREAM_STATUS",
    "RETRYABLE_KINDS",
    "kind_for_status",
    "redact",
    "RedactingFilter",
    "install_log_filter",
]

INVALID_JSON = "Invalid JSON in request body"
INVALID_KEY = "API key is invalid or missing."
KEY_HEADERS = "'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
NO_CREDITS = "Insufficient credits. Please top up your account."
RATE_LIMITED = "Rate limit exceeded. Please try again later."


class ConnectorError(Exception):
    status = 500
    message = "An unexpected server error occurred."

    def __init__(self, message: str | None = None, *, headers: dict | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = headers or {}


class BadRequest(ConnectorError):
    status = 400


class InvalidCursor(BadRequest):
    """A cursor (a previous page's ``minCursor``) the chosen provider cannot page from.

    Providers raise it knowing only what their cursors look like (``form``); the route names
    the request field with :meth:`for_field`.
    """

    def __init__(self, provider: str, form: str, cursor: Any):
        self.provider, self.form, self.cursor = provider, form, cursor
        super().__init__(self.for_field("cursor"))

    def for_field(self, key: str) -> str:
        shown = repr(self.cursor[:40]) if isinstance(self.cursor, str) else repr(self.cursor)[:40]
        return (f"'{key}' must be the minCursor of a previous response from this provider "
                f"({self.form} for {self.provider}); got {shown}.")


class Unauthorized(ConnectorError):
    status = 401
    message = INVALID_KEY


class InsufficientCredits(ConnectorError):
    status = 403
    message = NO_CREDITS


class QuotaExceeded(ConnectorError):
    status = 403


class NotFoundError(ConnectorError):
    status = 404
    message = "Not found."


class Conflict(ConnectorError):
    status = 409


class PayloadTooLarge(ConnectorError):
    status = 413


class RateLimited(ConnectorError):
    """The caller's own per-minute limit (the upstream's is ``UpstreamError("rate_limited")``)."""

    status = 429
    message = RATE_LIMITED

    def __init__(self, retry_after: int, message: str | None = None, *, limit: int | None = None):
        seconds = max(1, int(retry_after))
        if message is None and limit is not None:
            message = (f"{RATE_LIMITED} This is your API key's limit of {limit} "
                       f"request{'' if limit == 1 else 's'} a minute; it resets in {seconds} s.")
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after = retry_after


# kind -> HTTP status the caller sees (contract section 4; the seed documents' table).
UPSTREAM_STATUS = {
    "could_not_process": 400,     # the upstream refused the handle itself
    "reported_issue": 400,        # the upstream refused the request for another reason
    "provider_key_rejected": 401,  # a caller-supplied X-Provider-Key was refused: the caller must fix it
    "not_found": 404,             # missing, private or hidden account
    "not_configured": 500,        # no provider has credentials: the operator must act
    "auth_failed": 500,           # the operator's provider credentials were refused
    "unexpected": 500,            # a bug of ours; details only in the log
    "unavailable": 502,           # upstream down, timing out or answering 5xx
    "invalid_data": 502,          # upstream answered 200 with a body we cannot read
    "fetch_error": 502,           # upstream failed in a way we cannot classify
    "rate_limited": 503,          # the upstream's own rate limit or quota
}

# Kinds worth another try later (by the poller, or by the caller after Retry-After).
RETRYABLE_KINDS = frozenset({"unavailable", "fetch_error", "rate_limited", "invalid_data"})

# Messages for kinds that no manifest words (they do not depend on the action).
GENERIC_MESSAGES = {
    "provider_key_rejected": "The {provider} provider rejected the key sent in X-Provider-Key. "
    "Check the provider key in your connection settings.",
}

# Second sentences for seed messages that do not say whose limit or whose key is missing.
UPSTREAM_RATE_LIMITED = ("This is the {provider} data provider's limit on this service, not your "
                         "API key's; try again in {seconds} s.")
PROVIDER_KEY_NEEDED = ("This server has no key for the {provider} provider named in X-Provider: "
                       "send your own {provider} key{form} in the X-Provider-Key header.")


class UpstreamError(ConnectorError):
    """The data provider failed. ``detail`` is for logs only and is redacted before logging."""

    def __init__(self, kind: str, detail: str = "", *, retry_after: float | None = None,
                 provider: str | None = None):
        if kind not in UPSTREAM_STATUS:
            raise ValueError(f"unknown upstream error kind {kind!r}")
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        self.provider = provider
        self.status = UPSTREAM_STATUS[kind]

    def user_message(self, messages: dict[str, str], handle: str | None = None) -> str:
        template = messages.get(self.kind) or GENERIC_MESSAGES.get(self.kind) or messages["unexpected"]
        return template.format(handle=handle or "", provider=self.provider or "provider",
                               detail="internal error")

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS


def kind_for_status(status: int) -> str:
    """Default reading of an upstream HTTP status; providers refine it with their error codes."""
    if status == 400 or status == 422:
        return "reported_issue"
    if status in (401, 403):
        return "auth_failed"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "fetch_error" if status == 500 else "unavailable"
    return "fetch_error"


_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")

_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|client_secret|client_key|secret|token|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+"),
    re.compile(r"\b(?:sk|sfk|tc|whsec|clt)[_.][A-Za-z0-9._-]{6,}"),
]


def _scrub(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        out = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "[redacted]", out)
    # SQLAlchemy error text ends with the statement's parameters: keys, secrets, handles.
    return _SQL_PARAMETERS.sub("[parameters hidden]", out)


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Remove anything that looks like a credential from a log line or an internal detail."""
    return _scrub(text, secrets)[:500]


class RedactingFilter(logging.Filter):
    """Scrubs a log record, traceback included, before any handler formats it.

    The message is rendered and redacted in place, and the traceback is formatted once into
    ``exc_text`` (redacted) with ``exc_info`` dropped, so no formatter can render the raw one.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = _scrub(message), ()
        if record.exc_info:
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = _scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = _scrub(record.stack_info)
        return True


# The one filter on the service's loggers. A logger's filters see only the records logged to
# it, not its children's, so it goes on each: the known ones now (this module is imported by
# everything that logs), and any made later by install_log_filter(), which create_app calls.
LOG_FILTER = RedactingFilter()
LOGGERS = ("connector", "connector.app", "connector.upstream", "connector.trigger")


def install_log_filter() -> None:
    """Put :data:`LOG_FILTER` on every ``connector`` logger (again is harmless)."""
    names = set(LOGGERS) | {n for n in logging.root.manager.loggerDict if n.startswith("connector.")}
    for name in names:
        logging.getLogger(name).addFilter(LOG_FILTER)


install_log_filter()
