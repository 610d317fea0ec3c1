"""Webhook targets: deliveries connect to an address that was checked (no DNS rebinding)."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from connector.errors import BadRequest
from connector.trigger.deliver import post_pinned
from connector.trigger.targets import pinned_targets


def resolver(*addresses):
    def resolve(host, port, type=None):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]
    return resolve


def test_pinned_urls_keep_the_name_for_host_and_tls():
    targets = pinned_targets("https://hooks.example.com/catch/1?x=2", allow_private=False,
                             resolve=resolver("2606:4700::1111", "93.184.216.34"))
    assert targets == [
        ("https://93.184.216.34/catch/1?x=2", {"Host": "hooks.example.com"}, {"sni_hostname": "hooks.example.com"}),
        ("https://[2606:4700::1111]/catch/1?x=2", {"Host": "hooks.example.com"}, {"sni_hostname": "hooks.example.com"}),
    ]
    plain = pinned_targets("http://hooks.example.com:8080/x", allow_private=False, resolve=resolver("93.184.216.34"))
    assert plain == [("http://93.184.216.34:8080/x", {"Host": "hooks.example.com:8080"}, {})]


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "fd00::1", "::ffff:10.0.0.1"])
def test_a_name_rebound_to_an_internal_address_is_refused(address):
    with pytest.raises(BadRequest, match="private, loopback or reserved"):
        pinned_targets("https://hooks.example.com/x", allow_private=False, resolve=resolver("93.184.216.34", address))


class Receiver(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):
        Receiver.seen.append((self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_connection_goes_to_the_checked_address_not_a_fresh_lookup():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    Receiver.seen.clear()
    try:
        with httpx.Client() as client:
            # "hooks.invalid" never resolves for real: only the checked address can have been used.
            # The first address refuses connections; the next checked one is tried.
            r = post_pinned(client, f"http://hooks.invalid:{port}/catch", b'{"id": "evt_1"}', {},
                            allow_private=True, resolve=resolver("127.0.0.2", "127.0.0.1"))
    finally:
        server.shutdown()
        server.server_close()
    assert r.status_code == 204
    assert Receiver.seen == [(f"hooks.invalid:{port}", b'{"id": "evt_1"}')]
