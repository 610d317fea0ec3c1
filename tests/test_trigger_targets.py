"""Webhook targets: deliveries connect to an address that was checked (no DNS rebinding)."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connector.errors import BadRequest
from connector.trigger.targets import resolve_target
from connector.trigger.webhook_post import post


def resolver(*addresses):
    def resolve(host, port, type=None):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]
    return resolve


def test_a_target_keeps_the_name_for_host_and_tls_and_lists_checked_addresses():
    target = resolve_target("https://hooks.example.com/catch/1?x=2", allow_private=False,
                            resolve=resolver("2606:4700::1111", "93.184.216.34"))
    assert target.addresses == ("93.184.216.34", "2606:4700::1111")          # IPv4 first
    assert (target.host, target.host_header, target.port, target.path) == \
        ("hooks.example.com", "hooks.example.com", 443, "/catch/1?x=2")
    assert target.receiver == "hooks.example.com:443"
    plain = resolve_target("http://Hooks.example.com:8080/x", allow_private=False, resolve=resolver("93.184.216.34"))
    assert (plain.host_header, plain.port, plain.receiver) == ("Hooks.example.com:8080", 8080, "hooks.example.com:8080")


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "fd00::1", "::ffff:10.0.0.1"])
def test_a_name_rebound_to_an_internal_address_is_refused(address):
    with pytest.raises(BadRequest, match="private, loopback or reserved"):
        resolve_target("https://hooks.example.com/x", allow_private=False, resolve=resolver("93.184.216.34", address))


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
        # "hooks.invalid" never resolves for real: only the checked address can have been used.
        # The first address refuses connections; the next checked one is tried.
        r = post(f"http://hooks.invalid:{port}/catch", b'{"id": "evt_1"}', {}, allow_private=True,
                 resolve=resolver("127.0.0.2", "127.0.0.1"), timeout=5, max_bytes=1024)
    finally:
        server.shutdown()
        server.server_close()
    assert r.status == 204
    assert Receiver.seen == [(f"hooks.invalid:{port}", b'{"id": "evt_1"}')]


class KeepAlive:
    """A raw HTTP/1.1 receiver on loopback: answers 204 keeping the connection open, and
    with ``close_idle`` closes each connection right after its answer without saying so
    (as a receiver whose idle timeout ran out between two webhooks)."""

    def __init__(self, close_idle: bool = False):
        self.close_idle = close_idle
        self.connections = 0
        self.requests = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                self.requests += 1
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                if self.close_idle:
                    return

    def close(self):
        self.server.close()


@pytest.mark.parametrize("close_idle", [False, True])
def test_webhooks_to_one_receiver_reuse_its_connection_and_survive_it_closing(close_idle):
    receiver = KeepAlive(close_idle=close_idle)
    try:
        for _ in range(5):
            answer = post(receiver.url, b"{}", {"content-type": "application/json"}, allow_private=True,
                          timeout=5, max_bytes=1024)
            assert answer.status == 204
        assert receiver.requests == 5                                    # each webhook once
        assert receiver.connections == (5 if close_idle else 1)          # one connection while it stays open
    finally:
        receiver.close()
