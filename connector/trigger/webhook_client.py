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
- Each receiver (scheme, host, port) has a short idle list of its own (:class:`_Pools`), so
  the connections a hanging receiver holds never slow a fast receiver's requests.

httpcore is used directly rather than through ``httpx.AsyncClient``: the client's layers
(cookies, auth, redirects, its request and response models) cost more CPU than the whole
exchange below them and give a webhook nothing (bench/RESULTS.md, "Issue 17: delivery").
"""

from __future__ import annotations

import asyncio
import contextvars
import os
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


READ_AHEAD = 256 * 1024   # bytes read ahead of httpcore before the socket stops being read
CORK = 64 * 1024          # bytes written are held until the answer is read, up to this many


class _Protocol(asyncio.Protocol):
    """What arrives on one connection, kept until :class:`_Stream` reads it (asyncio's own
    transports, no anyio: its cancel scopes and checkpoints cost more CPU per request than
    the whole exchange with a fast receiver, bench/RESULTS.md "Issue 17: delivery")."""

    def __init__(self):
        self.transport = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.reading: asyncio.Future | None = None    # a read waiting for data
        self.writing: asyncio.Future | None = None    # a write waiting for the buffer to drain
        self.paused = False                           # writing paused by the transport
        self.held = False                             # reading paused by us (READ_AHEAD)

    def connection_made(self, transport):
        self.transport = transport

    def _wake(self, waiter_name: str) -> None:
        waiter = getattr(self, waiter_name)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_AHEAD and not self.held:   # an endless body is not read ahead into memory
            self.held = True
            self.transport.pause_reading()
        self._wake("reading")

    def eof_received(self):
        self.eof = True
        self._wake("reading")
        return None                             # (closes the transport)

    def connection_lost(self, exc):
        self.eof = True
        self.error = exc
        self.paused = False
        self._wake("reading")
        self._wake("writing")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake("writing")


async def _until(protocol: "_Protocol", slot: str, done, timeout: float | None, expired: Exception) -> None:
    """Wait until ``done()``, woken through the future the protocol's callbacks resolve
    (``protocol.reading`` or ``protocol.writing``: ``slot``); ``expired`` past ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not done():
                setattr(protocol, slot, asyncio.get_running_loop().create_future())
                try:
                    await getattr(protocol, slot)
                finally:
                    setattr(protocol, slot, None)
    except TimeoutError:
        raise expired from None


class _Stream(httpcore.AsyncNetworkStream):
    """One connection as httpcore's network stream, over an asyncio transport. The attempt's
    deadline (``asyncio.timeout_at`` in :meth:`WebhookClient.post`) cancels any wait here."""

    def __init__(self, transport, protocol: _Protocol, sock=None):
        self.transport, self.protocol = transport, protocol
        self.corked: list[bytes] = []     # written, not yet sent: sent in one go before the next read
        self.sock = sock if sock is not None else transport.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self.protocol
        if self.corked:
            buffer = b"".join(self.corked)
            self.corked.clear()
            try:
                await self._send(buffer, timeout)
            except httpcore.WriteError:   # as httpcore does: a receiver may answer and close before
                pass                      # reading all of a request; its answer is read if it came
        if not protocol.buffer and not protocol.eof:
            await _until(protocol, "reading", lambda: protocol.buffer or protocol.eof, timeout,
                         httpcore.ReadTimeout("timed out reading"))
        buffer = protocol.buffer
        if buffer:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
            if protocol.held and len(buffer) <= READ_AHEAD and not self.transport.is_closing():
                protocol.held = False
                self.transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or "connection lost") from protocol.error
        return b""                              # the receiver closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Held until the next read (httpcore writes a request's headers and body apart, and
        a send each is a system call each), or sent at once past ``CORK`` bytes."""
        if buffer:
            self.corked.append(buffer)
            if sum(map(len, self.corked)) > CORK:
                buffer = b"".join(self.corked)
                self.corked.clear()
                await self._send(buffer, timeout)

    async def _send(self, buffer: bytes, timeout: float | None) -> None:
        protocol = self.protocol
        if self.transport.is_closing():
            raise httpcore.WriteError("connection closed") from protocol.error
        self.transport.write(buffer)
        if protocol.paused:
            await _until(protocol, "writing", lambda: not protocol.paused, timeout,
                         httpcore.WriteTimeout("timed out writing"))
            if protocol.error is not None:
                raise httpcore.WriteError(str(protocol.error) or "connection lost") from protocol.error

    async def aclose(self) -> None:
        self.corked.clear()
        self.transport.close()

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(self.transport, self.protocol, ssl_context,
                                                 server_hostname=server_hostname)
        except TimeoutError:
            self.transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:     # (ssl.SSLError is an OSError)
            self.transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        except BaseException:
            self.transport.close()
            raise
        return _Stream(transport, self.protocol, self.sock)

    def get_extra_info(self, info: str):
        if info == "socket":
            return self.sock
        if info == "is_readable":   # asked of an idle connection: anything there means closed or broken
            protocol = self.protocol     # (the loop reads as data comes; a close it has not seen yet
            return bool(protocol.buffer) or protocol.eof or self.transport.is_closing()   # fails the
        # request on that connection, which is then tried once more on a new one)
        if info == "ssl_object":
            return self.transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self.transport.get_extra_info("sockname")
        if info == "server_addr":
            return self.transport.get_extra_info("peername")
        return None


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """An asyncio network backend for httpcore that dials only the checked addresses of the
    target being sent to (:data:`_checked`, set by :meth:`WebhookClient.post`)."""

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        target, dialled = _checked.get() or (None, [])
        if target is None or target.host.lower() != host.lower() or target.port != port:
            raise httpcore.ConnectError(f"{host[:100]} was not checked for this delivery")   # never dial blind
        dialled.append(host)
        loop = asyncio.get_running_loop()
        reason = "no address"
        for address in target.addresses:     # IPv4 first; the next one when one refuses
            try:                              # (a numeric address: asyncio looks nothing up)
                async with asyncio.timeout(timeout):
                    transport, protocol = await loop.create_connection(
                        _Protocol, host=address, port=port,
                        local_addr=(local_address, 0) if local_address else None)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"timed out connecting to {target.host[:100]}") from None
            except OSError as exc:
                reason = _reason(exc)
                continue
            stream = _Stream(transport, protocol)
            for option in socket_options or ():
                stream.sock.setsockopt(*option)
            return stream
        raise httpcore.ConnectError(f"could not connect to {target.host[:100]}: {reason}")

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("webhooks go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Pools:
    """The kept-alive connections of each receiver (scheme, host, port): httpcore's HTTP/1.1
    connections in a short idle list each, rather than its connection pool (whose bookkeeping
    checks every connection of the pool at each request and cost a third of the worker's CPU,
    bench/RESULTS.md "Issue 17: delivery"). A connection is put back only when its answer was
    read to its end (httpcore's connection is then idle; any other is closed), at most
    ``MAX_IDLE`` per receiver, for at most ``IDLE_FOR`` seconds."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: CheckedBackend):
        self.ssl_context, self.backend = ssl_context, backend
        self.idle: dict[tuple, list] = {}      # (scheme, host, port) -> idle connections, newest last
        self._swept = time.monotonic()

    async def connection(self, target: Target) -> httpcore.AsyncHTTP11Connection:
        """An idle connection to the target's receiver, or a new one (dialled by the backend)."""
        now = time.monotonic()
        if now - self._swept > IDLE_FOR:
            self._swept = now
            await self._sweep()
        key = (target.scheme, target.host, target.port)
        idle = self.idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()
        stream = await self.backend.connect_tcp(target.host, target.port)
        if target.scheme == "https":
            stream = await stream.start_tls(self.ssl_context, server_hostname=target.host)
        origin = httpcore.Origin(target.scheme.encode(), target.host.encode("ascii"), target.port)
        return httpcore.AsyncHTTP11Connection(origin=origin, stream=stream, keepalive_expiry=IDLE_FOR)

    async def put_back(self, target: Target, connection: httpcore.AsyncHTTP11Connection) -> None:
        """After the answer was closed: kept when httpcore left it idle (a complete answer),
        closed otherwise."""
        if connection.is_idle():
            idle = self.idle.setdefault((target.scheme, target.host, target.port), [])
            if len(idle) < MAX_IDLE:
                idle.append(connection)
                return
        await connection.aclose()

    async def _sweep(self) -> None:
        for key, idle in list(self.idle.items()):
            for connection in [c for c in idle if not c.is_idle() or c.has_expired()]:
                idle.remove(connection)
                await connection.aclose()
            if not idle:
                del self.idle[key]

    async def aclose(self) -> None:
        idle, self.idle = self.idle, {}
        for connections in idle.values():
            for connection in connections:
                await connection.aclose()


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
                        connection = await self.pools.connection(target)
                        try:
                            response = await connection.handle_async_request(request)
                        except BaseException:
                            await connection.aclose()   # (httpcore has closed it already, unless cancelled)
                            raise
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
            try:
                await response.aclose()
            finally:                             # kept only if the answer was read to its end
                await self.pools.put_back(target, connection)

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
