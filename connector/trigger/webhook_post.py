"""One webhook POST under one deadline, reading a capped part of the answer.

An HTTP client's timeouts are per operation: a receiver that sends a byte every few
seconds never trips them. Here every socket operation (connect, TLS handshake, send, each
read) gets what is left of one overall deadline, the name lookup included, and at most
``max_bytes`` of the response are read before the connection is closed. The connection
goes to an address checked by :mod:`.targets` (never a fresh lookup), with ``Host`` and
the TLS server name kept as the URL's name. Plain answers are read directly; any other HTTP/1.1 framing is h11's
(httpx's own parser).

Connections are kept alive and reused for the next webhook to the same receiver (scheme,
host and port, to an address the fresh check allows), at most ``MAX_IDLE`` idle ones per
receiver, for at most ``IDLE_FOR`` seconds; only a connection whose answer was read to its
end within the limits goes back, so a receiver that hangs, drips or streams never has one
reused. A reused connection the receiver had closed meanwhile is retried once on a new
one, within the same deadline. A checked target is remembered for ``TARGET_TTL`` seconds
(the connection still goes only to an address that was checked).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import h11

from ..errors import BadRequest
from .targets import Target, resolve_target

BODY_GRACE = 1.0   # seconds spent reading a body after the status line (the status decides)
MAX_IDLE = 8       # idle kept-alive connections per receiver (the per-host cap runs at most 8 at once)
IDLE_FOR = 20.0    # seconds an idle connection is kept (receivers commonly close after 60-75 s)
TARGET_TTL = 5.0   # seconds a checked target (its name lookup) is reused


class _Stale(Exception):
    """A reused connection turned out closed before any answer: try a new one."""


class _Idle:
    """Idle kept-alive connections by receiver ``(scheme, host, port)``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._conns: dict[tuple, list] = {}     # receiver -> [(socket, address, idle since)]

    def take(self, key: tuple, addresses: tuple[str, ...]):
        """An idle connection to one of ``addresses`` still open, as ``(socket, address)``, or None."""
        while True:
            with self._lock:
                conns = self._conns.get(key)
                if not conns:
                    return None
                sock, address, since = conns.pop()
            if address in addresses and time.monotonic() - since < IDLE_FOR and _quiet(sock):
                return sock, address
            sock.close()

    def give(self, key: tuple, sock, address: str) -> None:
        with self._lock:
            conns = self._conns.setdefault(key, [])
            if len(conns) < MAX_IDLE:
                conns.append((sock, address, time.monotonic()))
                return
        sock.close()

    def close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, {}
        for entries in conns.values():
            for sock, _, _ in entries:
                sock.close()


def _quiet(sock) -> bool:
    """An idle connection has nothing to read: readable means closed (or junk) - drop it."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


idle = _Idle()
_targets: dict[tuple, tuple[Target, float]] = {}
_targets_lock = threading.Lock()


def _target(url: str, allow_private: bool, resolve, timeout: float) -> Target:
    """The checked target, from a lookup made less than ``TARGET_TTL`` seconds ago when
    there is one (the system resolver's only: a caller's own ``resolve`` always asks)."""
    key = (url, allow_private)
    if resolve is socket.getaddrinfo:
        with _targets_lock:
            hit = _targets.get(key)
        if hit is not None and time.monotonic() < hit[1]:
            return hit[0]
    target = resolve_target(url, allow_private=allow_private, resolve=resolve, timeout=timeout)
    if resolve is socket.getaddrinfo:
        with _targets_lock:
            if len(_targets) > 10_000:
                _targets.clear()
            _targets[key] = (target, time.monotonic() + TARGET_TTL)
    return target


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
        target = _target(url, allow_private, resolve, deadline.left())
    except BadRequest as exc:
        raise PostFailed(exc.message.replace("'targetUrl' ", "the target ")) from None
    key = (target.scheme, target.host, target.port)
    reused = idle.take(key, target.addresses)
    if reused is not None:
        sock, address = reused
        try:
            return _attempt(sock, address, key, target, body, headers, deadline, max_bytes, timeout, reused=True)
        except _Stale:
            pass
    sock, address = _connect(target, deadline)
    return _attempt(sock, address, key, target, body, headers, deadline, max_bytes, timeout, reused=False)


def _attempt(sock, address, key, target, body, headers, deadline, max_bytes, timeout, *, reused: bool) -> Answer:
    keep = False
    try:
        answer, keep = _exchange(sock, target, body, headers, deadline, max_bytes, reused=reused)
        return answer
    except socket.timeout:
        raise PostFailed(f"timed out after {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise PostFailed(f"TLS error: {exc.reason or exc}") from None
    except h11.ProtocolError:
        raise PostFailed("the receiver did not answer with valid HTTP") from None
    except UnicodeError:       # a URL stored before targets were normalised to ASCII
        raise PostFailed("the target URL has characters HTTP cannot send; subscribe again") from None
    except OSError as exc:
        if reused:
            raise _Stale() from None
        raise PostFailed(f"connection failed: {exc.strerror or type(exc).__name__}") from None
    finally:
        if keep:
            idle.give(key, sock, address)
        else:
            sock.close()


def _connect(target: Target, deadline: _Deadline) -> tuple[socket.socket, str]:
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
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address
    raise PostFailed(f"could not connect to {target.host[:100]}: {error}")


MAX_HEAD = 16 * 1024   # bytes of status line and headers accepted (as h11's cap)


def _exchange(sock, target: Target, body: bytes, headers: dict, deadline: _Deadline,
              max_bytes: int, *, reused: bool = False) -> tuple[Answer, bool]:
    """The answer, and whether the connection may carry another request (the answer was
    read to its end and neither side asked to close).

    The request is written directly (its parts are ours or checked: the path and host come
    from a checked URL). A plain answer (HTTP/1.x with a ``Content-Length``, or none for
    204/304) is read directly too; anything else (chunked, close-delimited, odd framing)
    goes to h11, which is given the bytes read so far.
    """
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}", f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in headers.items())]
    sock.settimeout(deadline.left())
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body)   # one deadline for all of it

    buffer = bytearray()
    while True:                              # the status line and headers, skipping 1xx answers
        end = buffer.find(b"\r\n\r\n")
        if end > MAX_HEAD or (end < 0 and len(buffer) > MAX_HEAD):
            raise h11.RemoteProtocolError("headers too long")
        if end < 0:
            sock.settimeout(deadline.left())
            chunk = sock.recv(16 * 1024)
            if not chunk:
                if reused and not buffer:
                    raise _Stale()
                raise PostFailed("the receiver closed the connection without an answer")
            buffer += chunk
            continue
        head = _plain_head(bytes(buffer[:end]))
        if head is None:                     # not a plain answer: h11 reads it
            return _h11_answer(sock, target, body, bytes(buffer), deadline, max_bytes)
        status, fields, version = head
        del buffer[:end + 4]
        if status >= 200:
            break
    length = 0 if status in (204, 304) else int(fields["content-length"])
    answer = Answer(status=status, headers=fields, body=b"")
    # The status decides the outcome; read a little of the body (for the hook's error text)
    # while it comes quickly, never more than max_bytes, then close unless it was all read.
    grace = _Deadline(min(BODY_GRACE, max(0.0, deadline.at - deadline.clock())))
    wanted = min(length, max_bytes)
    try:
        while len(buffer) < wanted:
            sock.settimeout(grace.left())
            chunk = sock.recv(16 * 1024)
            if not chunk:
                break
            buffer += chunk
    except (PostFailed, OSError):
        pass                                 # a slow or broken body does not change the status
    answer.body = bytes(buffer[:wanted])
    keep = (len(buffer) == length and version == b"HTTP/1.1"
            and "close" not in fields.get("connection", "").lower())
    return answer, keep


def _plain_head(raw: bytes):
    """``(status, headers, version)`` of a head that :func:`_exchange` reads by itself, else None."""
    try:
        text = raw.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
            return None
        fields = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or name in fields or line[0] in " \t":
                return None
            fields[name.lower()] = value.strip(" \t")
    except ValueError:
        return None
    status = int(code)
    if 200 <= status and status not in (204, 304):
        length = fields.get("content-length")
        if "transfer-encoding" in fields or length is None or not length.isdigit() or not length.isascii():
            return None
    return status, fields, version.encode()


def _h11_answer(sock, target: Target, body: bytes, received: bytes, deadline: _Deadline,
                max_bytes: int) -> tuple[Answer, bool]:
    """Read the answer with h11, from the bytes already ``received`` on (the request is sent)."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    conn.send(h11.Request(method="POST", target=target.path,
                          headers=[("Host", target.host_header), ("Content-Length", str(len(body)))]))
    conn.send(h11.Data(data=body))
    conn.send(h11.EndOfMessage())
    conn.receive_data(received)

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
    grace = _Deadline(min(BODY_GRACE, max(0.0, deadline.at - deadline.clock())))
    chunks, size, complete = [], 0, False
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
            complete = isinstance(event, h11.EndOfMessage)
            break                                # EndOfMessage, or the connection closed
    except (PostFailed, OSError, h11.ProtocolError):
        pass                                     # a slow or broken body does not change the status
    answer.body = b"".join(chunks)
    keep = complete and conn.our_state is h11.DONE and conn.their_state is h11.DONE
    return answer, keep
