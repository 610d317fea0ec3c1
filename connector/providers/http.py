"""Resilient upstream HTTP, shared by every network provider.

One pooled :class:`httpx.Client` per provider instance; connect and read timeouts; bounded
retries with exponential backoff and full jitter on 429, 5xx, timeouts and connection
errors; ``Retry-After`` honoured; everything inside a per-request deadline so a caller
(Zapier allows 30 s) gets an answer in time. :class:`RetryPolicy` is the one retry policy for
upstream calls: nothing above this module retries what it retried (the bulk walk,
:mod:`connector.walk`, asks for a more patient policy instead). The clock, the sleep and the
jitter's random numbers are parameters, so tests move time instead of waiting. The status of the final response is left to
the provider to read; transport failures become ``UpstreamError("unavailable")`` and a body
that cannot be decoded ``UpstreamError("invalid_data")``.

:func:`read_json` is the one way providers parse a 200: anything but a JSON object is
``invalid_data`` (the seed's 502), never an exception that would surface as a 500.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import orjson

from ..config import Settings
from ..errors import UpstreamError, redact

log = logging.getLogger("connector.upstream")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 86400.0  # a day: anything longer (or not a finite number) is treated as a day


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts an upstream call gets, how long to wait between them, and the deadline
    for all of them together (see :meth:`UpstreamHTTP.request`)."""

    max_attempts: int = 3
    backoff_base: float = 0.25
    backoff_cap: float = 4.0
    deadline: float = 25.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(max_attempts=max(1, settings.upstream_max_attempts), backoff_base=settings.upstream_backoff_base,
                   backoff_cap=settings.upstream_backoff_cap, deadline=settings.upstream_deadline)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | Any = random) -> float:
        """The upstream's Retry-After, else a full-jitter exponential backoff drawn from ``rng``."""
        if retry_after is not None:
            return retry_after
        return rng.uniform(0, min(self.backoff_cap, self.backoff_base * (2 ** attempt)))


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" dates: HTTP dates are always UTC
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - now()
    if math.isnan(seconds):
        return None
    # "inf", "1e400" or a date years ahead must not overflow int() further down.
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def response_json(response: httpx.Response):
    """``response.json()``, read by orjson when the body is UTF-8 (several times faster on a page
    of followers); anything orjson refuses is left to ``response.json()``, so what parses and
    what raises ``ValueError`` is unchanged."""
    content_type = response.headers.get("Content-Type", "").lower()
    if "charset" not in content_type or "utf-8" in content_type:   # (charset_encoding is slow to read)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            pass
    return response.json()


def read_json(response: httpx.Response, what: str, provider: str) -> dict:
    """The body of a 200 as a dict, or ``UpstreamError("invalid_data")``."""
    try:
        data = response_json(response)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamError("invalid_data", f"non-JSON body from {what}", provider=provider) from None
    if not isinstance(data, dict):
        raise UpstreamError("invalid_data", f"{what} body is not a JSON object", provider=provider)
    return data


class UpstreamHTTP:
    """``request()`` returns the final ``httpx.Response`` (maybe an error status) or raises
    ``UpstreamError`` for transport failures that outlived the retries.

    ``clock`` (seconds, monotonic) measures the deadline, ``sleep`` waits between attempts and
    ``rng`` draws the jitter; tests pass ones they control.
    """

    def __init__(self, base_url: str, *, provider: str, headers: dict | None = None,
                 settings: Settings | None = None, policy: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None, secrets: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | Any = random):
        settings = settings or Settings()
        self.provider = provider
        self.secrets = secrets
        self.policy = policy or RetryPolicy.from_settings(settings)
        self.clock, self.sleep, self.rng = clock, sleep, rng
        self.transport = transport or httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        # The client holds the settings (base URL, headers with httpx's defaults, timeouts) and
        # closes the pool; requests go straight to its transport (see _send).
        self.client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": "tiktok-connector/0.1", **(headers or {})},
            timeout=httpx.Timeout(settings.upstream_read_timeout, connect=settings.upstream_connect_timeout),
            follow_redirects=False,
            transport=self.transport,
        )
        self._base = str(self.client.base_url).rstrip("/") + "/"
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, path: str) -> httpx.URL:
        """``path`` under the base URL (as httpx.Client joins them), parsed once per path."""
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self._base + path.lstrip("/"))
            if len(self._urls) < 256:
                self._urls[path] = url
        return url

    def _send(self, method: str, path: str, timeout: httpx.Timeout, *, params=None, json=None,
              data=None, content=None, headers=None) -> httpx.Response:
        """One attempt, read whole. It skips what ``httpx.Client.send`` adds around the transport,
        none of which an upstream call wants and which costs about as much as the call itself:
        redirects (never followed), auth flows (the key is a header) and the cookie jar (an
        upstream's cookies must not pass from one caller's request to the next)."""
        merged = self.client.headers
        if headers:
            merged = merged.copy()
            merged.update(headers)
        request = httpx.Request(method, self._url(path), params=params, json=json, data=data, content=content,
                                headers=merged, extensions={"timeout": timeout.as_dict()})
        response = self.transport.handle_request(request)
        response.request = request
        try:
            response.read()
        except BaseException:
            response.close()
            raise
        return response

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        policy = self.policy
        started = self.clock()
        attempt = 0
        while True:
            remaining = policy.deadline - (self.clock() - started)
            # Every attempt (connect + read) must end inside the deadline.
            timeout = httpx.Timeout(min(self.client.timeout.read or remaining, remaining),
                                    connect=min(self.client.timeout.connect or remaining, remaining))
            try:
                response = self._send(method, url, timeout, **kwargs)
            except httpx.TimeoutException as exc:
                failure, response = UpstreamError("unavailable", f"timeout: {type(exc).__name__}",
                                                  provider=self.provider), None
            except httpx.TransportError as exc:
                failure, response = UpstreamError("unavailable", redact(f"transport: {type(exc).__name__}: {exc}",
                                                                        self.secrets),
                                                  provider=self.provider), None
            except httpx.DecodingError as exc:
                # A body that does not decode (bad gzip, bad charset) will not decode next time either.
                raise UpstreamError("invalid_data", redact(f"undecodable body: {exc}", self.secrets),
                                    provider=self.provider) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise UpstreamError("fetch_error", redact(f"{type(exc).__name__}: {exc}", self.secrets),
                                    provider=self.provider) from None
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                failure = None
            attempt += 1
            retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
            delay = policy.delay(attempt, retry_after, self.rng)
            elapsed = self.clock() - started
            margin = min(0.5, policy.deadline / 10)  # time the next attempt needs at the very least
            if attempt >= policy.max_attempts or elapsed + delay >= policy.deadline - margin:
                if failure is not None:
                    raise failure
                if retry_after is not None:
                    response.extensions["retry_after"] = retry_after
                return response
            log.info("retrying %s %s after %s (attempt %d, waiting %.2fs)", self.provider, url,
                     response.status_code if response is not None else failure.detail,
                     attempt, delay)
            self.sleep(delay)

    def close(self) -> None:
        self.client.close()
