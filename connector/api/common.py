"""Request plumbing every route shares: the services, caller auth, JSON bodies, errors."""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..config import Settings
from ..errors import INVALID_JSON, BadRequest, ConnectorError, RateLimited, Unauthorized, UpstreamError, redact
from ..manifests import Manifest
from ..providers import ProviderPool
from ..store import Store
from ..store.keys import Caller, KeyStore
from ..trigger.crypto import NO_SECRET_KEY

log = logging.getLogger("connector")

REQUEST_SOURCES = ("MAKE_DOT_COM", "ZAPIER", "API")


@dataclass
class Services:
    settings: Settings
    manifests: dict[str, Manifest]
    store: Store
    keys: KeyStore
    providers: ProviderPool
    clock: Callable[[], float] = field(default=time.time)   # unix seconds; tests move it


def services() -> Services:
    return current_app.extensions["connector"]


def provider_choice() -> tuple[str, str | None]:
    """The provider this request names (X-Provider, X-Provider-Key) or the configured one,
    and the caller's provider key if it sent one."""
    credentials = (request.headers.get("X-Provider-Key") or "").strip() or None
    return services().providers.resolve_name(request.headers.get("X-Provider"), credentials), credentials


def stored_provider_choice() -> tuple[str, str | None]:
    """:func:`provider_choice` for a trigger, whose provider key the poller must keep: a 400
    when the request sends one and the operator has not set ``CONNECTOR_SECRET_KEY``."""
    name, credentials = provider_choice()
    if credentials and not services().settings.secret_key:
        raise BadRequest(NO_SECRET_KEY)
    return name, credentials


def caller_key() -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("X-API-Key", "").strip() or None


def authenticate() -> Caller:
    caller = services().keys.authenticate(caller_key())
    if caller is None:
        raise Unauthorized()
    g.caller = caller
    return caller


def request_source(body: Any = None) -> str:
    """The body's ``requestSource``, else the ``X-Request-Source`` header, else ``API``."""
    source = body.get("requestSource") if isinstance(body, dict) else None
    if source not in REQUEST_SOURCES:
        source = request.headers.get("X-Request-Source")
        source = source if source in REQUEST_SOURCES else "API"
    return source


def count_request(caller: Caller, action: str, body: Any = None) -> None:
    """Charge one request to the caller's per-minute limit; 429 beyond it."""
    state = services().keys.hit(caller, action, request_source(body))
    g.rate = state
    if not state.allowed:
        raise RateLimited(state.reset_in)


def json_body() -> Any:
    """The parsed body: ``None`` when empty, 400 "Invalid JSON in request body" when unparsable."""
    raw = request.get_data(cache=True)  # 413 beyond MAX_CONTENT_LENGTH
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest(INVALID_JSON) from None


def counted_body(caller: Caller, action: str) -> Any:
    """The request body, after the request was counted against the caller's rate limit.

    A malformed or oversized body is counted (and answered with the rate-limit headers) like
    any other request before its 400 or 413.
    """
    try:
        body, error = json_body(), None
    except (BadRequest, RequestEntityTooLarge) as exc:
        body, error = None, exc
    count_request(caller, action, body)
    if error is not None:
        raise error
    return body


def upstream_failure(manifest: Manifest, exc: UpstreamError, handle: str | None,
                     secrets_: tuple[str, ...] = ()) -> ConnectorError:
    """The caller-facing error for a provider failure, logged without secrets."""
    log.warning("provider %s failed for %s (%s): %s", exc.provider or "?", manifest.key, exc.kind,
                redact(exc.detail, secrets_))
    error = ConnectorError(exc.user_message(manifest.errors, handle))
    error.status = exc.status
    if exc.kind == "rate_limited":
        error.headers["Retry-After"] = str(max(1, int(exc.retry_after or 60)))
    return error


def unexpected(manifest: Manifest | None, exc: BaseException) -> ConnectorError:
    """A bug of ours: a short reference for the caller, the details in the log only."""
    ref = secrets.token_hex(4)
    log.error("unexpected error ref=%s: %s", ref, redact(f"{type(exc).__name__}: {exc}"), exc_info=False)
    if manifest is not None:
        message = manifest.errors["unexpected"].format(detail=f"internal error (ref {ref})", handle="", provider="")
    else:
        message = f"An unexpected server error occurred (ref {ref})."
    return ConnectorError(message)
