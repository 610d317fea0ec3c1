"""Request plumbing every route shares: the services, caller auth, JSON bodies, errors."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import orjson
from flask import current_app, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from ..errors import (INVALID_JSON, INVALID_KEY, KEY_HEADERS, PROVIDER_KEY_NEEDED, UPSTREAM_RATE_LIMITED,
                      BadRequest, ConnectorError, RateLimited, Unauthorized, UpstreamError, redact)
from ..manifests import Manifest
from ..providers import PROVIDERS
from ..services import Services
from ..store.keys import Caller
from ..trigger.crypto import NO_SECRET_KEY

log = logging.getLogger("connector")

REQUEST_SOURCES = ("MAKE_DOT_COM", "ZAPIER", "API")


# Types orjson must hand to Flask's ``default`` so that answers read as they always did
# (a datetime as an HTTP date, a dataclass as a dict).
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def parse_json(raw: bytes | str) -> Any:
    """``json.loads`` semantics at orjson's speed: orjson reads every ordinary body; what it
    refuses (NaN, integers beyond 64 bits, UTF-16 bodies, lone surrogates, deep nesting) is
    read by ``json.loads``, so nothing is accepted or refused differently than before."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson underneath: the same documents (compact, keys in
    insertion order), written several times faster. Non-ASCII text is written as UTF-8
    rather than ``\\u`` escapes, and NaN as null; anything orjson cannot write (an integer
    beyond 64 bits, a key that is not a string) falls back to Flask's own writer."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self._dump(obj, **kwargs).decode()

    def _dump(self, obj: Any, **kwargs: Any) -> bytes:
        if not kwargs or kwargs == {"separators": (",", ":")}:
            try:
                return orjson.dumps(obj, default=self.default, option=_ORJSON_OPTIONS)
            except TypeError:
                pass
        return super().dumps(obj, **kwargs).encode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return super().loads(s, **kwargs) if kwargs else parse_json(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(obj)
        return self._app.response_class(self._dump(obj) + b"\n", mimetype=self.mimetype)


class IdConverter(BaseConverter):
    """What ``<name>`` matches in every route of this app (it replaces werkzeug's default): an id
    as this service makes them (``hook_…``, ``w_…``) or a handle. Anything else (NUL and control
    bytes, non-ASCII, ``/``, overlong) matches no route, so it is a 404 before any view or query
    sees it. A route that needs more says so (``<path:…>``)."""

    regex = r"[A-Za-z0-9_.\-]{1,64}"


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
    """The key of ``Authorization: Bearer <key>``, else of ``X-API-Key: <key>``."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def _how_to_send_key() -> str:
    """Why no key was found in the request, and how to send one (never echoing what was sent)."""
    scheme = request.headers.get("Authorization", "").strip().partition(" ")[0]
    if scheme.lower() == "bearer":
        return f"The Authorization header has no key after 'Bearer': send your key as {KEY_HEADERS}."
    if scheme:
        return f"The Authorization header is not 'Bearer <key>': send your key as {KEY_HEADERS}."
    return f"No key was sent: send your key as {KEY_HEADERS}."


def authenticate() -> Caller:
    key = caller_key()
    caller = services().keys.authenticate(key)
    if caller is None:
        # An unknown or revoked key gets the seed's words alone; a request whose key could
        # not be found is also told how to send it.
        raise Unauthorized() if key else Unauthorized(f"{INVALID_KEY} {_how_to_send_key()}")
    if "inflight_key" not in g:   # a request holds one slot however often it authenticates
        current_app.extensions["connector.inflight"].enter(caller.id)
        g.inflight_key = caller.id   # given back by the app's teardown (app.py)
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
        raise RateLimited(state.reset_in, limit=state.limit)


def raw_body() -> bytes:
    """The body's bytes; 413 beyond MAX_CONTENT_LENGTH, for sized and chunked bodies alike."""
    raw = request.get_data(cache=True)  # a Content-Length over the limit is a 413 here
    limit = request.max_content_length
    if (limit is not None and request.content_length is None and len(raw) >= limit
            and "wsgi.input_terminated" in request.environ):
        # A chunked body has no length to check up front, and werkzeug stops reading it at
        # the limit without a word: one byte more tells a body at the limit from a longer one.
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return raw


def json_body() -> Any:
    """The parsed body: ``None`` when empty, 400 "Invalid JSON in request body" when unparsable."""
    raw = raw_body()
    if not raw.strip():
        return None
    try:
        return parse_json(raw)
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
                     secrets_: tuple[str, ...] = ()) -> UpstreamError:
    """The provider failure worded for the caller (logged without secrets).

    The seed's message, then whose limit an upstream rate limit is, or that a provider named
    in X-Provider needs a key this server lacks.
    """
    log.warning("provider %s failed for %s (%s): %s", exc.provider or "?", manifest.key, exc.kind,
                redact(exc.detail, secrets_))
    message = exc.user_message(manifest.errors, handle)
    provider = exc.provider or "upstream"
    if exc.kind == "rate_limited":
        seconds = max(1, int(exc.retry_after or 60))
        message += " " + UPSTREAM_RATE_LIMITED.format(provider=provider, seconds=seconds)
    elif (exc.kind == "not_configured" and (request.headers.get("X-Provider") or "").strip()
          and not (request.headers.get("X-Provider-Key") or "").strip()):
        form = PROVIDERS[provider].credential_form if provider in PROVIDERS else None
        message += " " + PROVIDER_KEY_NEEDED.format(provider=provider, form=f" ({form})" if form else "")
    exc.message = message      # its status and Retry-After come from its kind at the edge
    return exc


def unexpected(manifest: Manifest | None, exc: BaseException) -> ConnectorError:
    """A bug of ours: a short reference for the caller; the traceback, redacted by the
    ``connector`` loggers' :class:`~connector.errors.RedactingFilter`, in the log only."""
    ref = secrets.token_hex(4)
    log.error("unexpected error ref=%s: %s: %s", ref, type(exc).__name__, exc, exc_info=exc)
    if manifest is not None:
        message = manifest.errors["unexpected"].format(detail=f"internal error (ref {ref})", handle="", provider="")
    else:
        message = f"An unexpected server error occurred (ref {ref})."
    return ConnectorError(message)
