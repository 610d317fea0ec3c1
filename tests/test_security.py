"""Security of the web tier: webhook target addresses, odd bytes in ids, console sessions and
sign-in throttling, webhook secrets at rest and their rotation.

Everything runs over real HTTP on loopback against SQLite files and, where configured,
PostgreSQL. The target filter is tested with no worker running (a worker would try to
deliver, which is not what is being checked).
"""

from __future__ import annotations

import socket

import pytest

from connector.errors import BadRequest
from connector.trigger.targets import resolve_target

HOOKS = "/api/v1/hooks"

# IPv6 forms that wrap a refused IPv4 address, and other addresses that are not globally routable.
REFUSED = [
    "2002:7f00:1::",          # 6to4 wrapping 127.0.0.1 (the form)
    "2002:a00:1::1",          # 6to4 wrapping 10.0.0.1
    "2002:a9fe:a9fe::",       # 6to4 wrapping 169.254.169.254 (cloud metadata)
    "fec0::1",                # deprecated site-local (the form)
    "fec0:1234::5",
    "64:ff9b::7f00:1",        # NAT64 well-known prefix wrapping 127.0.0.1
    "64:ff9b::a9fe:a9fe",     # ... wrapping 169.254.169.254
    "64:ff9b:1::808:808",     # NAT64 local-use prefix: never global
    "::ffff:127.0.0.1",       # IPv4-mapped
    "::ffff:192.168.1.1",
    "::127.0.0.1",            # IPv4-compatible (deprecated)
    "::10.0.0.1",
    "::8.8.8.8",              # IPv4-compatible is deprecated whatever it wraps
    "::1", "::", "fe80::1", "fd00::1", "ff02::1", "2001:db8::1", "2001::1",
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "192.0.2.10", "198.18.0.1", "224.0.0.1", "255.255.255.255",
]
ALLOWED = ["93.184.216.34", "2606:4700::1111", "2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8"]


def url_for(address: str) -> str:
    return f"http://[{address}]/hook" if ":" in address else f"http://{address}/hook"


@pytest.mark.parametrize("address", REFUSED)
def test_a_target_at_an_address_that_is_not_globally_routable_is_refused(address):
    with pytest.raises(BadRequest, match="private, loopback or reserved") as refused:
        resolve_target(url_for(address), allow_private=False)      # the real getaddrinfo, on a literal
    assert "'targetUrl'" in refused.value.message


@pytest.mark.parametrize("address", REFUSED[:12])
def test_a_name_resolving_to_a_wrapped_internal_address_is_refused(address):
    def resolve(host, port, type=None):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]
    with pytest.raises(BadRequest, match=f"resolves to {address}"):
        resolve_target("https://hooks.example.com/x", allow_private=False, resolve=resolve)


@pytest.mark.parametrize("address", ALLOWED)
def test_globally_routable_addresses_and_forms_wrapping_them_are_allowed(address):
    assert resolve_target(url_for(address), allow_private=False).addresses


@pytest.mark.parametrize("url", ["http://[2002:7f00:1::]/", "http://[fec0::1]/", "http://[::ffff:7f00:1]:8080/x",
                                 "http://[64:ff9b::7f00:1]/", "http://[::127.0.0.1]/", "http://2130706433/",
                                 "http://0x7f.1/"])
def test_the_api_refuses_those_targets_naming_the_field(serve, make_settings, url):
    live = serve(make_settings(allow_private_targets=False))
    raw, _ = live.services.keys.create(name="t")
    with live.client(raw) as http:
        r = http.post(HOOKS, json={"event": "new_follower", "handle": "stoolpresidente", "targetUrl": url})
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith("'targetUrl' host") and "webhook targets must be public" in r.json()["error"]
        assert http.get(HOOKS).json()["hooks"] == []


# -- odd bytes in ids ------------------------------------------------------------------------

ODD_IDS = ["%00", "hook_%00abc", "hook_%01", "%7F", "hook_%C3%A9", "%E2%80%AE", "%FF%FE", "hook_" + "a" * 300,
           "hook_%0d%0aSet-Cookie:x=1", "..%2F..%2Fetc", "hook_a%20b"]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_bytes_in_a_hook_id_are_a_404_never_a_500(serve, make_settings, database_url, odd, caplog):
    live = serve(make_settings(database_url=database_url))
    raw, _ = live.services.keys.create(name="t")
    with live.client(raw) as http:
        for method in ("GET", "PATCH", "DELETE"):
            r = http.request(method, f"{HOOKS}/{odd}", json={"enabled": True} if method == "PATCH" else None)
            assert r.status_code == 404, (method, odd, r.status_code, r.text)
            assert "error" in r.json()
        r = http.post(f"{HOOKS}/{odd}/rotate-secret")
        assert r.status_code in (404, 405), (odd, r.status_code, r.text)
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text


ADMIN = "operator-secret-0123456789"


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_bytes_in_console_ids_and_filters_are_a_4xx_never_a_500(serve, make_settings, database_url, odd, caplog):
    from tests.test_console import sign_in
    live = serve(make_settings(database_url=database_url, admin_key=ADMIN))
    client = live.app.test_client()
    assert sign_in(client).status_code == 303
    for path in (f"/console/hooks/{odd}", f"/console/watches/{odd}", f"/console/hooks/{odd}/replay?since=2020-01-01",
                 f"/console/keys?key={odd}", f"/console/hooks?handle={odd}", f"/console/watches?key={odd}"):
        r = client.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text
