"""Webhook target URLs: http(s) only, and never an internal address unless allowed.

Checked when a hook is created and again before every delivery (DNS may change).
``CONNECTOR_ALLOW_PRIVATE_TARGETS=1`` allows loopback and private networks (tests, LANs).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

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
    if not allow_private:
        for info in infos:
            address = info[4][0]
            if _forbidden(address):
                raise BadRequest(f"'targetUrl' host {host[:100]} resolves to {address}, a private, "
                                 "loopback or reserved address; webhook targets must be public.")
    return url
