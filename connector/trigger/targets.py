"""Webhook target URLs: http(s) only, and never an internal address unless allowed.

Checked when a hook is created and again before every delivery (DNS may change). A delivery
connects to an address that was checked (:func:`pinned_targets`), so a name that
resolves to a public address for the check and to an internal one for the connection
(DNS rebinding) cannot reach inside.
``CONNECTOR_ALLOW_PRIVATE_TARGETS=1`` allows loopback and private networks (tests, LANs).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from ..errors import BadRequest

EXAMPLE = "https://hooks.zapier.com/hooks/standard/123/abc/"


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified or not ip.is_global)


def check_target_url(url, *, allow_private: bool, resolve=socket.getaddrinfo) -> str:
    """The URL when it may receive webhooks; :class:`BadRequest` saying what to fix otherwise."""
    return _checked(url, allow_private=allow_private, resolve=resolve)[0]


def pinned_targets(url, *, allow_private: bool, resolve=socket.getaddrinfo) -> list[tuple[str, dict, dict]]:
    """``(url, headers, extensions)`` for httpx, one per checked address (IPv4 first), that
    connect to that address itself.

    The URL's host is replaced by the address; ``Host`` keeps the name, and for https the
    TLS server name (and so the certificate check) stays the name too.
    """
    url, parts, addresses = _checked(url, allow_private=allow_private, resolve=resolve)
    host_header = {"Host": parts.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    out = []
    for address in sorted(dict.fromkeys(addresses), key=lambda a: ":" in a):
        literal = f"[{address}]" if ":" in address else address
        netloc = literal + (f":{parts.port}" if parts.port else "")
        out.append((urlunsplit(parts._replace(netloc=netloc)), host_header, extensions))
    return out


def _checked(url, *, allow_private: bool, resolve):
    if not isinstance(url, str) or not url.strip():
        raise BadRequest(f"'targetUrl' is required: the URL that receives the events, e.g. {EXAMPLE}")
    url = url.strip()
    if len(url) > 2000:
        raise BadRequest("'targetUrl' is too long: at most 2000 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadRequest(f"'targetUrl' is not a valid URL; use e.g. {EXAMPLE}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"'targetUrl' must be an http:// or https:// URL, e.g. {EXAMPLE}")
    if parts.username or parts.password:
        raise BadRequest("'targetUrl' must not contain a user name or password.")
    host = parts.hostname
    try:
        infos = resolve(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise BadRequest(f"'targetUrl' host {host[:100]} cannot be resolved; check the URL.") from None
    addresses = [info[4][0].split("%", 1)[0] for info in infos]
    if not addresses:
        raise BadRequest(f"'targetUrl' host {host[:100]} cannot be resolved; check the URL.")
    if not allow_private:
        for address in addresses:
            if _forbidden(address):
                raise BadRequest(f"'targetUrl' host {host[:100]} resolves to {address}, a private, "
                                 "loopback or reserved address; webhook targets must be public.")
    return url, parts, addresses
