"""Every error a caller can see: the domain's error tree, with user-facing messages.

    ConnectorError          a user-facing message (never a secret, never a traceback)
     ├── BadRequest          malformed JSON, wrong types, unknown fields, bad handles
     │    ├── InvalidCursor  a cursor the chosen provider cannot page from
     │    └── NotOffered     the chosen provider does not offer the operation
     ├── Unauthorized        missing, unknown or revoked caller key
     ├── Forbidden           a resource the request may not read from where it is (e.g. /metrics)
     ├── InsufficientCredits the caller key cannot pay for the request
     ├── QuotaExceeded       the caller key holds as many hooks or watched accounts as allowed
     ├── NotFoundError       unknown route or resource
     ├── Conflict            the resource changed underneath the request; try again
     ├── PayloadTooLarge     a request body over the limit
     ├── RateLimited         the caller key is over its per-minute limit (``retry_after``)
     └── UpstreamError       the data provider failed; its ``kind`` (:data:`UPSTREAM_KINDS`)
                             picks the message from the action's manifest

Each error has a ``kind``, a row of :data:`ERROR_KINDS`, the one table of what a failure
means to each edge: HTTP status, who must act, whether to retry, a watch's status, Make's
error type. Code below the edges raises these and knows nothing of HTTP or terminals: the HTTP
edge (:mod:`connector.api.errors`) reads the table for statuses and headers, the CLI
(:mod:`connector.cli.base`) words them. A message that names how the caller chose a
provider says :data:`PROVIDER_OPTION` / :data:`PROVIDER_KEY_OPTION`; each edge fills in its
own words with :func:`worded` (the ``X-Provider`` headers, the ``--provider`` options).

Where a seed document fixes a message, a caller's message starts with the seed's words and
adds, in a second sentence, what to fix. :func:`redact` and :class:`RedactingFilter` keep
credentials (and SQL parameters) out of logs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ConnectorError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "InsufficientCredits",
    "NotFoundError",
    "QuotaExceeded",
    "Conflict",
    "RateLimited",
    "InvalidCursor",
    "NotOffered",
    "PayloadTooLarge",
    "UpstreamError",
    "ErrorKind",
    "ERROR_KINDS",
    "UPSTREAM_KINDS",
    "PROVIDER_OPTION",
    "PROVIDER_KEY_OPTION",
    "worded",
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

# How a caller chose its provider and provider key; each edge says it in its own words.
# (Not in braces: messages pass through str.format.)
PROVIDER_OPTION = "[provider option]"
PROVIDER_KEY_OPTION = "[provider key option]"


def worded(message: str, words: dict[str, str]) -> str:
    """``message`` with the edge's words for :data:`PROVIDER_OPTION` and :data:`PROVIDER_KEY_OPTION`."""
    for token, word in words.items():
        message = message.replace(token, word)
    return message


class ConnectorError(Exception):
    kind = "unexpected"        # its row in ERROR_KINDS: status, who must act, ...
    message = "An unexpected server error occurred."

    def __init__(self, message: str | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message


class BadRequest(ConnectorError):
    """The request itself is wrong; the message says what to fix."""

    kind = "bad_request"


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


class NotOffered(BadRequest):
    """The provider chosen for a request does not offer its operation (the provider says why)."""

    def __init__(self, provider: str, what: str, reason: str):
        super().__init__(f"The {provider} provider does not offer {what}: {reason}. "
                         f"Choose another provider with {PROVIDER_OPTION}.")


class Unauthorized(ConnectorError):
    kind = "unauthorized"
    message = INVALID_KEY


class Forbidden(ConnectorError):
    """The request may not read this from where it comes; the message says what would allow it."""

    kind = "forbidden"


class InsufficientCredits(ConnectorError):
    kind = "insufficient_credits"
    message = NO_CREDITS


class QuotaExceeded(ConnectorError):
    """The caller key holds as many hooks or watched accounts as it may."""

    kind = "quota_exceeded"


class NotFoundError(ConnectorError):
    kind = "no_such_resource"
    message = "Not found."


class Conflict(ConnectorError):
    """What the request changes changed underneath it; trying again works."""

    kind = "conflict"


class PayloadTooLarge(ConnectorError):
    """The request body is over the limit."""

    kind = "payload_too_large"


class RateLimited(ConnectorError):
    """The caller's own per-minute limit (the upstream's is ``UpstreamError("rate_limited")``)."""

    kind = "over_rate_limit"
    message = RATE_LIMITED

    def __init__(self, retry_after: int, message: str | None = None, *, limit: int | None = None):
        seconds = max(1, int(retry_after))
        if message is None and limit is not None:
            message = (f"{RATE_LIMITED} This is your API key's limit of {limit} "
                       f"request{'' if limit == 1 else 's'} a minute; it resets in {seconds} s.")
        super().__init__(message)
        self.retry_after = seconds


@dataclass(frozen=True)
class ErrorKind:
    """How every edge treats one kind of failure: the HTTP status (contract section 4), who must
    act (``caller``, ``operator``, ``upstream``: wait and retry, ``us``: a bug), whether another
    try later may work, what a watch whose poll fails so shows, Make's error type for the
    status, and the message when none is given (an upstream kind's comes from the manifest)."""

    status: int
    who: str
    retryable: bool = False
    watch_status: str = "error"
    make_type: str = "RuntimeError"
    message: str | None = None
    upstream: bool = True          # a provider raises it (an UpstreamError kind)


# The one table of error kinds, read by api/errors.py (statuses, Retry-After), trigger/poll.py
# (a watch's status), export/make.py (Make's error types) and export/openapi.py (statuses and
# messages). UpstreamError kinds first: what can go wrong upstream (the seed documents' table).
ERROR_KINDS: dict[str, ErrorKind] = {
    # the upstream refused the handle itself
    "could_not_process": ErrorKind(400, "caller", make_type="DataError"),
    # the upstream refused the request for another reason
    "reported_issue": ErrorKind(400, "caller", make_type="DataError"),
    # a caller-supplied provider key was refused: the caller must fix it
    "provider_key_rejected": ErrorKind(401, "caller", watch_status="auth_failed",
                                       make_type="InvalidAccessTokenError",
                                       message="The {provider} provider rejected the key sent in "
                                       + PROVIDER_KEY_OPTION + ". Check the provider key in your connection settings."),
    # missing, private or hidden account
    "not_found": ErrorKind(404, "caller", watch_status="not_found", make_type="DataError"),
    # no provider has credentials: the operator must act
    "not_configured": ErrorKind(500, "operator", watch_status="auth_failed"),
    # the operator's provider credentials were refused
    "auth_failed": ErrorKind(500, "operator", watch_status="auth_failed"),
    # a bug of ours; details only in the log
    "unexpected": ErrorKind(500, "us", message=ConnectorError.message),
    # upstream down, timing out or answering 5xx
    "unavailable": ErrorKind(502, "upstream", retryable=True, make_type="ConnectionError"),
    # upstream answered 200 with a body we cannot read
    "invalid_data": ErrorKind(502, "upstream", retryable=True, make_type="ConnectionError"),
    # upstream failed in a way we cannot classify
    "fetch_error": ErrorKind(502, "upstream", retryable=True, make_type="ConnectionError"),
    # the upstream's own rate limit or quota
    "rate_limited": ErrorKind(503, "upstream", retryable=True, make_type="RateLimitError"),
    # The request's own faults, raised at the edges (the error classes above carry these kinds).
    "bad_request": ErrorKind(400, "caller", make_type="DataError", upstream=False),
    "unauthorized": ErrorKind(401, "caller", make_type="InvalidAccessTokenError", message=INVALID_KEY,
                              upstream=False),
    "forbidden": ErrorKind(403, "caller", make_type="InvalidConfigurationError", upstream=False),
    "insufficient_credits": ErrorKind(403, "caller", make_type="InvalidConfigurationError", message=NO_CREDITS,
                                      upstream=False),
    "quota_exceeded": ErrorKind(403, "caller", make_type="InvalidConfigurationError", upstream=False),
    "no_such_resource": ErrorKind(404, "caller", make_type="DataError", message="Not found.", upstream=False),
    "conflict": ErrorKind(409, "caller", retryable=True, upstream=False),
    "payload_too_large": ErrorKind(413, "caller", make_type="DataError", message="Request body is too large.",
                                   upstream=False),
    "over_rate_limit": ErrorKind(429, "caller", retryable=True, make_type="RateLimitError", message=RATE_LIMITED,
                                 upstream=False),
}

# What can go wrong upstream (the kinds an UpstreamError may carry).
UPSTREAM_KINDS = tuple(name for name, kind in ERROR_KINDS.items() if kind.upstream)

# Kinds worth another try later (by the poller, or by the caller after Retry-After).
RETRYABLE_KINDS = frozenset(name for name in UPSTREAM_KINDS if ERROR_KINDS[name].retryable)

# Second sentences for seed messages that do not say whose limit or whose key is missing.
UPSTREAM_RATE_LIMITED = ("This is the {provider} data provider's limit on this service, not your "
                         "API key's; try again in {seconds} s.")
PROVIDER_KEY_NEEDED = ("This server has no key for the {provider} provider named in " + PROVIDER_OPTION + ": "
                       "send your own {provider} key{form} with " + PROVIDER_KEY_OPTION + ".")


class UpstreamError(ConnectorError):
    """The data provider failed. ``detail`` is for logs only and is redacted before logging."""

    def __init__(self, kind: str, detail: str = "", *, retry_after: float | None = None,
                 provider: str | None = None):
        if kind not in UPSTREAM_KINDS:
            raise ValueError(f"unknown upstream error kind {kind!r}")
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        self.provider = provider

    def user_message(self, messages: dict[str, str], handle: str | None = None) -> str:
        template = messages.get(self.kind) or ERROR_KINDS[self.kind].message or messages["unexpected"]
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
