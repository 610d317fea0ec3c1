"""Webhook target URLs: http(s) only, and never an internal address unless allowed.

Checked when a hook is created and again before every delivery (DNS may change). A delivery
connects to an address that was checked (:attr:`Target.addresses`), so a name that
resolves to a public address for the check and to an internal one for the connection
(DNS rebinding) cannot reach inside. Name lookups have a timeout of their own
(``getaddrinfo`` has none), and one slow name holds at most one lookup thread.
``CONNECTOR_ALLOW_PRIVATE_TARGETS=1`` allows loopback and private networks (tests, LANs).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import BadRequest

EXAMPLE = "https://hooks.zapier.com/hooks/standard/123/abc/"
ALLOW_PRIVATE = "CONNECTOR_ALLOW_PRIVATE_TARGETS"
# Where the operator allows them: both processes check (the worker again before every delivery).
PRIVATE_HINT = (f"To deliver to this machine or a private network, the operator sets {ALLOW_PRIVATE}=1 for both "
                "the web service (`connector serve`) and the worker (`connector poll`); "
                "`connector serve --demo` does it for its own run.")
LOOKUP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str            # the name, for Host and the TLS server name
    port: int
    host_header: str     # host[:port] as written in the URL
    path: str            # path and query, what the request line carries
    addresses: tuple[str, ...]   # checked addresses, IPv4 first


class _Resolver:
    """``getaddrinfo`` with a timeout. Each lookup runs on a daemon thread of its own, so
    slow names never queue behind each other (a shared pool would let a few slow names
    starve every other lookup); a name being looked up already is waited for rather than
    asked again, so one name ties up at most one thread however often it is asked."""

    def __init__(self):
        self._pending: dict[tuple, Future] = {}
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int, *, timeout: float, resolve=socket.getaddrinfo) -> list:
        return self.start(host, port, resolve).result(timeout=max(0.001, timeout))

    def start(self, host: str, port: int, resolve=socket.getaddrinfo) -> Future:
        """The lookup's future (shared by every caller of the same name: never cancel it)."""
        key = (host, port, resolve)
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                future = self._pending[key] = Future()
                threading.Thread(target=self._run, args=(key, future, resolve), name="dns", daemon=True).start()
        return future

    def _run(self, key, future: Future, resolve) -> None:
        host, port, _ = key
        try:
            result = resolve(host, port, type=socket.SOCK_STREAM)
        except BaseException as exc:   # handed to every waiter
            outcome = (None, exc)
        else:
            outcome = (result, None)
        with self._lock:
            self._pending.pop(key, None)
        if outcome[1] is not None:
            future.set_exception(outcome[1])
        else:
            future.set_result(outcome[0])


lookup = _Resolver()


# IPv6 forms that carry an IPv4 address a packet may end up at: NAT64's well-known prefix
# (RFC 6052) and the deprecated IPv4-compatible form; IPv4-mapped and 6to4 (2002::/16) have
# their own properties on ipaddress.IPv6Address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def wrapped_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address wraps (mapped, 6to4, NAT64, compatible), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64 or ip in IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_address(address: str) -> bool:
    """True unless the address is globally routable, and so is any IPv4 address it wraps.

    Refused besides loopback, private, link-local, shared (CGN), multicast, reserved and
    documentation ranges: the deprecated site-local ``fec0::/10``, NAT64's local-use
    ``64:ff9b:1::/48`` (not global), and an IPv6 form that wraps a refused IPv4 address
    (``::ffff:127.0.0.1``, ``2002:7f00:1::``, ``64:ff9b::a00:1``, ``::10.0.0.1``).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return True
        inner = wrapped_ipv4(ip)
        if inner is not None:
            if forbidden_address(str(inner)):
                return True
            if ip.ipv4_mapped is not None or ip in NAT64:   # the packets go to the IPv4 address
                return False
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified or not ip.is_global)


def check_target_url(url, *, allow_private: bool, resolve=socket.getaddrinfo,
                     timeout: float = LOOKUP_TIMEOUT) -> str:
    """The URL when it may receive webhooks; :class:`BadRequest` saying what to fix otherwise."""
    return resolve_target(url, allow_private=allow_private, resolve=resolve, timeout=timeout).url


def target_receiver(url: str) -> str:
    """``host:port`` of a URL already checked (no lookup)."""
    parts = urlsplit(url)
    return f"{(parts.hostname or '').lower()}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def resolve_target(url, *, allow_private: bool, resolve=socket.getaddrinfo,
                   timeout: float = LOOKUP_TIMEOUT) -> Target:
    """Check the URL and look its host up (within ``timeout`` seconds); every address must
    be allowed. :class:`BadRequest` with what to fix otherwise."""
    url, parts = _parse_target(url)
    try:
        infos = lookup(parts.hostname, _port(parts), timeout=timeout, resolve=resolve)
    except FutureTimeout:
        raise _slow(parts.hostname, timeout) from None
    except (OSError, UnicodeError, ValueError):
        raise _unresolved(parts.hostname) from None
    return _checked_target(url, parts, infos, allow_private)


async def resolve_target_async(url, *, allow_private: bool, resolve=socket.getaddrinfo,
                               timeout: float = LOOKUP_TIMEOUT) -> Target:
    """:func:`resolve_target` for an event loop: waiting for the lookup holds no thread."""
    url, parts = _parse_target(url)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def done(future: Future) -> None:     # on the lookup's thread: hand the result to the loop
        loop.call_soon_threadsafe(_settle, waiter, future)
    lookup.start(parts.hostname, _port(parts), resolve).add_done_callback(done)
    try:
        infos = await asyncio.wait_for(waiter, timeout)
    except asyncio.TimeoutError:
        raise _slow(parts.hostname, timeout) from None
    except (OSError, UnicodeError, ValueError):
        raise _unresolved(parts.hostname) from None
    return _checked_target(url, parts, infos, allow_private)


def _settle(waiter, future: Future) -> None:
    if waiter.done():                   # (timed out meanwhile)
        return
    if future.exception() is not None:
        waiter.set_exception(future.exception())
    else:
        waiter.set_result(future.result())


def _port(parts) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _slow(host: str, timeout: float) -> BadRequest:
    return BadRequest(f"'targetUrl' host {host[:100]} did not resolve within {timeout:g} s; "
                      "check the URL or try again.")


def _unresolved(host: str) -> BadRequest:
    return BadRequest(f"'targetUrl' host {host[:100]} cannot be resolved; check the URL.")


def _parse_target(url):
    """The URL as HTTP sends it and its parts, or :class:`BadRequest` (no lookup)."""
    if not isinstance(url, str) or not url.strip():
        raise BadRequest(f"'targetUrl' is required: the URL that receives the events, e.g. {EXAMPLE}")
    url = url.strip()
    if len(url) > 2000:
        raise BadRequest("'targetUrl' is too long: at most 2000 characters.")
    try:
        parts = urlsplit(url)
        parts.port      # (a port that is no number raises here)
    except ValueError:
        raise BadRequest(f"'targetUrl' is not a valid URL; use e.g. {EXAMPLE}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"'targetUrl' must be an http:// or https:// URL, e.g. {EXAMPLE}")
    if parts.username or parts.password:
        raise BadRequest("'targetUrl' must not contain a user name or password.")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise BadRequest("'targetUrl' must not contain spaces or control characters; percent-encode them.")
    if not url.isascii():   # an international name or path, written as HTTP sends it
        try:
            netloc = parts.hostname.encode("idna").decode("ascii") + (f":{parts.port}" if parts.port else "")
        except UnicodeError:
            raise BadRequest(f"'targetUrl' host {parts.hostname[:100]} is not a valid domain name.") from None
        url = urlunsplit(parts._replace(netloc=netloc, path=quote(parts.path, safe="/%:@!$&'()*+,;=~"),
                                        query=quote(parts.query, safe="/%:@!$&'()*+,;=~?")))
        parts = urlsplit(url)
    return url, parts


def _checked_target(url: str, parts, infos: list, allow_private: bool) -> Target:
    """The target of a looked-up URL when every address it resolved to is allowed."""
    host, port = parts.hostname, _port(parts)
    addresses = [info[4][0].split("%", 1)[0] for info in infos]
    if not addresses:
        raise _unresolved(host)
    if not allow_private:
        for address in addresses:
            if forbidden_address(address):
                raise BadRequest(f"'targetUrl' host {host[:100]} resolves to {address}, a private, "
                                 f"loopback or reserved address; webhook targets must be public. {PRIVATE_HINT}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ordered = tuple(sorted(dict.fromkeys(addresses), key=lambda a: ":" in a))
    return Target(url=url, scheme=parts.scheme, host=host, port=port,
                  host_header=parts.netloc.rsplit("@", 1)[-1], path=path, addresses=ordered)
