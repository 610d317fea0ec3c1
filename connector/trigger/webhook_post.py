"""One webhook POST under one deadline, reading a capped part of the answer.

An HTTP client's timeouts are per operation: a receiver that sends a byte every few
seconds never trips them. Here every socket operation (connect, TLS handshake, send, each
read) gets what is left of one overall deadline, the name lookup included, and at most
``max_bytes`` of the response are read before the connection is closed. The connection
goes to an address checked by :mod:`.targets` (never a fresh lookup), with ``Host`` and
the TLS server name kept as the URL's name. HTTP/1.1 framing is h11's (httpx's own parser).
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass

import h11

from ..errors import BadRequest
from .targets import Target, resolve_target

BODY_GRACE = 1.0   # seconds spent reading a body after the status line (the status decides)


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


class _Deadline:
    def __init__(self, seconds: float, clock=time.monotonic):
        self.clock = clock
        self.seconds = seconds
        self.at = clock() + seconds

    def left(self) -> float:
        left = self.at - self.clock()
        if left <= 0:
            raise PostFailed(f"timed out after {self.seconds:g} s")
        return left


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def post(url: str, body: bytes, headers: dict, *, allow_private: bool, timeout: float,
         max_bytes: int, resolve=socket.getaddrinfo) -> Answer:
    """POST ``body`` to ``url``; the answer's status and first ``max_bytes`` of body, or
    :class:`PostFailed` (unreachable, refused, timed out, not HTTP)."""
    deadline = _Deadline(timeout)
    try:
        target = resolve_target(url, allow_private=allow_private, resolve=resolve, timeout=deadline.left())
    except BadRequest as exc:
        raise PostFailed(exc.message.replace("'targetUrl' ", "the target ")) from None
    sock = _connect(target, deadline)
    try:
        return _exchange(sock, target, body, headers, deadline, max_bytes)
    except socket.timeout:
        raise PostFailed(f"timed out after {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise PostFailed(f"TLS error: {exc.reason or exc}") from None
    except h11.ProtocolError:
        raise PostFailed("the receiver did not answer with valid HTTP") from None
    except UnicodeError:       # a URL stored before targets were normalised to ASCII
        raise PostFailed("the target URL has characters HTTP cannot send; subscribe again") from None
    except OSError as exc:
        raise PostFailed(f"connection failed: {exc.strerror or type(exc).__name__}") from None
    finally:
        sock.close()


def _connect(target: Target, deadline: _Deadline) -> socket.socket:
    """A connection to the first checked address that accepts one (TLS when https)."""
    error = "no address"
    for address in target.addresses:
        try:
            sock = socket.create_connection((address, target.port), timeout=deadline.left())
        except socket.timeout:
            raise PostFailed(f"timed out after {deadline.seconds:g} s (connecting)") from None
        except OSError as exc:
            error = exc.strerror or type(exc).__name__
            continue
        if target.scheme == "https":
            try:
                sock.settimeout(deadline.left())
                sock = _tls_context().wrap_socket(sock, server_hostname=target.host)
            except socket.timeout:
                sock.close()
                raise PostFailed(f"timed out after {deadline.seconds:g} s (TLS handshake)") from None
            except ssl.SSLError as exc:
                sock.close()
                raise PostFailed(f"TLS error: {exc.reason or exc}") from None
            except BaseException:
                sock.close()
                raise
        return sock
    raise PostFailed(f"could not connect to {target.host[:100]}: {error}")


def _exchange(sock, target: Target, body: bytes, headers: dict, deadline: _Deadline,
              max_bytes: int) -> Answer:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)
    request_headers = [("Host", target.host_header), ("Content-Length", str(len(body))),
                       ("Connection", "close"), *headers.items()]
    data = conn.send(h11.Request(method="POST", target=target.path, headers=request_headers))
    data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    sock.settimeout(deadline.left())
    sock.sendall(data)      # the timeout bounds the whole sendall (Python >= 3.5)

    def receive(limit: _Deadline) -> None:
        sock.settimeout(limit.left())
        conn.receive_data(sock.recv(16 * 1024))

    while True:                              # the status line and headers (h11 caps their size)
        event = conn.next_event()
        if event is h11.NEED_DATA:
            receive(deadline)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            break
        raise PostFailed("the receiver closed the connection without an answer")
    answer = Answer(status=event.status_code,
                    headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers},
                    body=b"")
    # The status decides the outcome; read a little of the body (for the hook's error text)
    # while it comes quickly, never more than max_bytes, then close.
    grace = _Deadline(min(BODY_GRACE, max(0.0, deadline.at - deadline.clock())))
    chunks, size = [], 0
    try:
        while size < max_bytes:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                receive(grace)
                continue
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data[:max_bytes - size]))
                size += len(chunks[-1])
                continue
            break                                # EndOfMessage, or the connection closed
    except (PostFailed, OSError, h11.ProtocolError):
        pass                                     # a slow or broken body does not change the status
    answer.body = b"".join(chunks)
    return answer
