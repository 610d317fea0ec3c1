"""The webhook client: one POST under one deadline, as a coroutine (httpcore, httpx's core).

An attempt that waits on a receiver costs a coroutine and a socket, not a thread, so
thousands can be open at once in little memory.

- Where it connects: the URL is checked by :mod:`.targets` (the name lookup holds no thread
  while it waits), and :class:`CheckedBackend`, the network backend under httpcore, dials
  only the addresses that check allowed for the request being sent; it never looks a name
  up itself (no DNS rebinding between check and connect). ``Host`` and the TLS server name
  stay the URL's name.
- One deadline covers the lookup, connect, TLS handshake, sending and the answer's status
  line and headers. The body is then read for what is left of it, at most ``BODY_GRACE``
  seconds and ``max_bytes`` bytes, streamed and cut off there (the status decides the
  outcome; the body only feeds the hook's error text).
- A connection goes back to its pool only after a complete answer; httpcore closes one
  whose answer was cut short (deadline, cap, broken framing). A kept-alive connection the
  receiver closed meanwhile is tried once more on a new one, within the same deadline.
  Redirects are never followed.
- Each receiver (scheme, host, port) has a pool of its own, so the connections a hanging
  receiver holds never slow the bookkeeping of a fast receiver's pool.

httpcore is used directly rather than through ``httpx.AsyncClient``: the client's layers
(cookies, auth, redirects, its request and response models) cost more CPU than the whole
exchange below them and give a webhook nothing (bench/RESULTS.md, "Issue 17: delivery").
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import select
import socket
import ssl
import time
from dataclasses import dataclass

import httpcore

from ..errors import BadRequest
from .targets import Target, resolve_target_async

BODY_GRACE = 1.0   # seconds spent reading a body after the status line (the status decides)
MAX_IDLE = 8       # idle kept-alive connections per receiver (the per-host cap runs at most 8 at once)
IDLE_FOR = 20.0    # seconds an idle connection is kept (receivers commonly close after 60-75 s)
TARGET_TTL = 5.0   # seconds a checked target (its name lookup) is reused

# The target being sent to, in the task sending it (what CheckedBackend may dial), and the
# addresses it dialled for this request (none: the request went on a kept-alive connection).
_checked: contextvars.ContextVar[tuple[Target, list] | None] = contextvars.ContextVar("webhook_target", default=None)


class PostFailed(Exception):
    """The attempt got no HTTP status: ``message`` says why, in words for the hook's owner."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Answer:
    status: int
    headers: dict       # lower-cased names
    body: bytes         # at most max_bytes


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection (``Connection refused``)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _readable(sock) -> bool:
    """Whether an idle connection has something to read (then it is closed, or broken)."""
    if sock is None or sock.fileno() < 0:
        return True
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    return bool(poll.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's anyio stream, with its socket looked up once: httpcore asks for it each
    time it checks an idle connection, and anyio answers with a ``getpeername`` system
    call each time (tens per request at a busy receiver)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream):
        self.inner = inner
        self.sock = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.AsyncNetworkStream:
        return _Stream(await self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str):
        if info == "socket":
            return self.sock
        if info == "is_readable":
            return _readable(self.sock)
        return self.inner.get_extra_info(info)


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's default (anyio) backend, dialling only the checked addresses of the
    target being sent to (:data:`_checked`, set by :meth:`WebhookClient.post`)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None):
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        target, dialled = _checked.get() or (None, [])
        if target is None or target.host.lower() != host.lower() or target.port != port:
            raise httpcore.ConnectError(f"{host[:100]} was not checked for this delivery")   # never dial blind
        dialled.append(host)
        reason = "no address"
        for address in target.addresses:     # IPv4 first; the next one when one refuses
            try:
                return _Stream(await self.inner.connect_tcp(address, port, timeout=timeout,
                                                            local_address=local_address, socket_options=socket_options))
            except httpcore.ConnectError as exc:
                reason = _reason(exc)
        raise httpcore.ConnectError(f"could not connect to {target.host[:100]}: {reason}")

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("webhooks go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _Pools:
    """An httpcore pool per receiver (scheme, host, port); a receiver's pool is dropped once
    it has no connection left and has not been used for ``IDLE_FOR`` seconds."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: CheckedBackend):
        self.ssl_context, self.backend = ssl_context, backend
        self.pools: dict[tuple, list] = {}     # (scheme, host, port) -> [pool, last used]
        self._swept = time.monotonic()

    def get(self, target: Target) -> httpcore.AsyncConnectionPool:
        now = time.monotonic()
        if now - self._swept > IDLE_FOR:
            self._swept = now
            for key in [k for k, (pool, used) in self.pools.items() if now - used > IDLE_FOR and not pool.connections]:
                del self.pools[key]
        key = (target.scheme, target.host, target.port)
        entry = self.pools.get(key)
        if entry is None:
            pool = httpcore.AsyncConnectionPool(ssl_context=self.ssl_context, max_keepalive_connections=MAX_IDLE,
                                                keepalive_expiry=IDLE_FOR, http1=True, http2=False,
                                                network_backend=self.backend)
            entry = self.pools[key] = [pool, now]
        entry[1] = now
        return entry[0]

    async def aclose(self) -> None:
        pools, self.pools = self.pools, {}
        for pool, _ in pools.values():
            await pool.aclose()


class WebhookClient:
    """POSTs webhooks from one event loop; :meth:`post` is one attempt. Close with :meth:`aclose`."""

    def __init__(self, *, timeout: float, max_bytes: int, allow_private: bool, resolve=socket.getaddrinfo,
                 ssl_context: ssl.SSLContext | None = None):
        self.timeout, self.max_bytes, self.allow_private, self.resolve = timeout, max_bytes, allow_private, resolve
        self.pools = _Pools(ssl_context or ssl.create_default_context(), CheckedBackend())
        self._targets: dict[str, tuple[Target, float]] = {}

    async def _target(self, url: str) -> Target:
        """The checked target, from a lookup made less than ``TARGET_TTL`` seconds ago when
        there is one (the system resolver's only: a caller's own ``resolve`` always asks)."""
        cache = self.resolve is socket.getaddrinfo
        hit = self._targets.get(url) if cache else None
        if hit is not None and time.monotonic() < hit[1]:
            return hit[0]
        target = await resolve_target_async(url, allow_private=self.allow_private, resolve=self.resolve,
                                            timeout=self.timeout)
        if cache:
            if len(self._targets) > 10_000:
                self._targets.clear()
            self._targets[url] = (target, time.monotonic() + TARGET_TTL)
        return target

    async def post(self, url: str, body: bytes, headers: dict) -> Answer:
        """POST ``body`` to ``url``: the status and the first ``max_bytes`` of the answer's
        body, or :class:`PostFailed` saying why there is no status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                target = await self._target(url)
                request = httpcore.Request(
                    b"POST", httpcore.URL(scheme=target.scheme.encode(), host=target.host.encode("ascii"),
                                          port=target.port, target=target.path.encode("ascii")),
                    headers=[(b"Host", target.host_header.encode("ascii")), (b"Content-Length", str(len(body)).encode()),
                             *((name.encode(), value.encode()) for name, value in headers.items())],
                    content=body)
                for again in (True, False):
                    token = _checked.set((target, dialled := []))
                    try:
                        response = await self.pools.get(target).handle_async_request(request)
                        break
                    except (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError):
                        if again and not dialled:   # a kept-alive connection the receiver had closed
                            continue                # meanwhile: once more, on a new one
                        raise
                    finally:
                        _checked.reset(token)
        except TimeoutError:
            raise PostFailed(f"timed out after {self.timeout:g} s") from None
        except BadRequest as exc:
            raise PostFailed(exc.message.replace("'targetUrl' ", "the target ")) from None
        except httpcore.ConnectError as exc:
            raise PostFailed(_failure(exc)) from None
        except (httpcore.ProtocolError, httpcore.NetworkError) as exc:
            raise PostFailed(_failure(exc)) from None
        except (UnicodeError, ValueError):       # a URL stored before targets were normalised to ASCII
            raise PostFailed("the target URL has characters HTTP cannot send; subscribe again") from None
        try:
            fields = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
            return Answer(response.status, fields, await self._read(response, min(BODY_GRACE, deadline - loop.time())))
        finally:
            await response.aclose()              # (keeps the connection only if the answer was read to its end)

    async def _read(self, response: httpcore.Response, seconds: float) -> bytes:
        """Up to ``max_bytes`` of the body, for at most ``seconds``; a slow, endless or broken
        body leaves the status as it is."""
        chunks, room = [], self.max_bytes
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                async for chunk in response.aiter_stream():
                    if len(chunk) > room:
                        chunks.append(chunk[:room])
                        break
                    chunks.append(chunk)
                    room -= len(chunk)
        except (TimeoutError, httpcore.ProtocolError, httpcore.NetworkError):
            pass
        return b"".join(chunks)

    async def aclose(self) -> None:
        await self.pools.aclose()


def _failure(exc: Exception) -> str:
    """An httpcore error in words for the hook's owner."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return f"TLS error: {seen.reason or seen}"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if isinstance(exc, httpcore.ConnectError):
        return text if text.startswith("could not connect") else f"connection failed: {_reason(exc)}"
    if isinstance(exc, httpcore.RemoteProtocolError):
        if "without sending" in text:
            return "the receiver closed the connection without an answer"
        return "the receiver did not answer with valid HTTP"
    if isinstance(exc, httpcore.LocalProtocolError):
        return "the target URL has characters HTTP cannot send; subscribe again"
    return f"connection failed: {_reason(exc)}"
