"""Webhook targets and the webhook client, against real receivers on loopback: deliveries
connect only to an address that was checked (no DNS rebinding), keep the URL's name for
``Host`` and TLS, end at one deadline, read a capped body, follow no redirect, and reuse a
connection only after a complete answer."""

import asyncio
import datetime
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.errors import BadRequest
from connector.trigger.targets import resolve_target, target_receiver
from connector.trigger.webhook_client import PostFailed, WebhookClient
from tests.trigger_kit import BadReceiver


def resolver(*addresses):
    def resolve(host, port, type=None):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]
    return resolve


def post(url, body=b"{}", headers=None, *, timeout=5, max_bytes=1024, times=1, **client):
    """``times`` POSTs in a row from one client (as the sender makes them): the answers or
    the PostFailed of each."""
    async def run():
        http = WebhookClient(timeout=timeout, max_bytes=max_bytes, allow_private=True, **client)
        answers = []
        try:
            for _ in range(times):
                try:
                    answers.append(await http.post(url, body, headers or {}))
                except PostFailed as exc:
                    answers.append(exc)
        finally:
            await http.aclose()
        return answers
    answers = asyncio.run(run())
    return answers[0] if times == 1 else answers


def test_a_target_keeps_the_name_for_host_and_tls_and_lists_checked_addresses():
    target = resolve_target("https://hooks.example.com/catch/1?x=2", allow_private=False,
                            resolve=resolver("2606:4700::1111", "93.184.216.34"))
    assert target.addresses == ("93.184.216.34", "2606:4700::1111")          # IPv4 first
    assert (target.host, target.host_header, target.port, target.path) == \
        ("hooks.example.com", "hooks.example.com", 443, "/catch/1?x=2")
    assert target_receiver(target.url) == "hooks.example.com:443"     # the per-receiver cap's unit
    plain = resolve_target("http://Hooks.example.com:8080/x", allow_private=False, resolve=resolver("93.184.216.34"))
    assert (plain.host_header, plain.port, target_receiver(plain.url)) == ("Hooks.example.com:8080", 8080, "hooks.example.com:8080")


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "fd00::1", "::ffff:10.0.0.1"])
def test_a_name_rebound_to_an_internal_address_is_refused(address):
    with pytest.raises(BadRequest, match="private, loopback or reserved"):
        resolve_target("https://hooks.example.com/x", allow_private=False, resolve=resolver("93.184.216.34", address))


def test_a_delivery_to_a_name_rebound_inside_is_refused_without_connecting():
    receiver = Raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    try:
        failed = WebhookClient(timeout=5, max_bytes=1024, allow_private=False, resolve=resolver("127.0.0.1"))
        with pytest.raises(PostFailed, match="resolves to 127.0.0.1, a private, loopback or reserved address"):
            asyncio.run(_post_then_close(failed, f"http://hooks.example.com:{receiver.port}/hook"))
        assert receiver.connections == 0
    finally:
        receiver.close()


async def _post_then_close(client, url):
    try:
        return await client.post(url, b"{}", {})
    finally:
        await client.aclose()


class Recorder(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):
        Recorder.seen.append((self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_connection_goes_to_the_checked_address_not_a_fresh_lookup():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    Recorder.seen.clear()
    try:
        # "hooks.invalid" never resolves for real: only the checked address can have been used.
        # The first address refuses connections; the next checked one is tried.
        r = post(f"http://hooks.invalid:{port}/catch", b'{"id": "evt_1"}', resolve=resolver("127.0.0.2", "127.0.0.1"))
    finally:
        server.shutdown()
        server.server_close()
    assert r.status == 204
    assert Recorder.seen == [(f"hooks.invalid:{port}", b'{"id": "evt_1"}')]


class Raw:
    """A raw HTTP/1.1 receiver on loopback: reads each request, sends ``answer`` and keeps
    the connection open for the next one; with ``close_idle`` closes each connection right
    after its answer without saying so (as a receiver whose idle timeout ran out between
    two webhooks). Counts connections and requests."""

    def __init__(self, answer: bytes, close_idle: bool = False, host: str = "127.0.0.1"):
        self.answer, self.close_idle = answer, close_idle
        self.connections = 0
        self.requests: list[bytes] = []
        self.server = socket.create_server((host, 0))
        self.port = self.server.getsockname()[1]
        self.url = f"http://{host}:{self.port}/hook"
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
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                self.requests.append(head)
                try:
                    conn.sendall(self.answer)
                except OSError:
                    return
                if self.close_idle:
                    return

    def close(self):
        self.server.close()


@pytest.mark.parametrize("close_idle", [False, True])
def test_webhooks_to_one_receiver_reuse_its_connection_and_survive_it_closing(close_idle):
    receiver = Raw(b"HTTP/1.1 204 No Content\r\n\r\n", close_idle=close_idle)
    try:
        answers = post(receiver.url, times=5)
        assert [a.status for a in answers] == [204] * 5
        assert len(receiver.requests) == 5                               # each webhook once
        assert receiver.connections == (5 if close_idle else 1)          # one connection while it stays open
    finally:
        receiver.close()


def test_a_connection_is_reused_only_after_a_complete_answer():
    long_body = b"x" * 5000           # more than the client reads (max_bytes 1024)
    cut = Raw(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5000\r\n\r\n" + long_body)
    whole = Raw(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10\r\n\r\noops oops!")
    try:
        cut_answers = post(cut.url, times=3, max_bytes=1024)
        assert [(a.status, len(a.body)) for a in cut_answers] == [(500, 1024)] * 3
        assert cut.connections == 3                                      # closed after each cut-short answer
        whole_answers = post(whole.url, times=3, max_bytes=1024)
        assert [(a.status, a.body) for a in whole_answers] == [(500, b"oops oops!")] * 3
        assert whole.connections == 1                                    # read to its end: kept alive
    finally:
        cut.close()
        whole.close()


def test_one_deadline_ends_an_attempt_to_a_dripping_receiver():
    for mode in ("drip_headers", "drip_body"):
        receiver = BadReceiver(mode, interval=0.2)   # a byte every 0.2 s: no single read ever waits long
        try:
            started = time.monotonic()
            answer = post(receiver.url, timeout=2)
            took = time.monotonic() - started
            if mode == "drip_headers":              # no status line within the deadline
                assert isinstance(answer, PostFailed) and answer.message == "timed out after 2 s"
            else:                                    # the status counts; the dripping body is cut short
                assert answer.status == 200 and len(answer.body) < 100
            assert took < 2 + 3, took                # (generous: the machine may be loaded)
            deadline = time.monotonic() + 5
            while receiver.open_connections() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.open_connections() == 0   # the connection was closed, not left hanging
        finally:
            receiver.close()


def test_an_endless_body_is_read_only_up_to_the_cap():
    receiver = BadReceiver("endless")
    try:
        answer = post(receiver.url, max_bytes=4096)
        assert answer.status == 200 and len(answer.body) == 4096
        deadline = time.monotonic() + 5
        while receiver.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.open_connections() == 0
    finally:
        receiver.close()


def test_a_redirect_is_never_followed():
    elsewhere = Raw(b"HTTP/1.1 204 No Content\r\n\r\n")
    redirect = Raw(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere.url}\r\nContent-Length: 0\r\n\r\n"
                   .encode())
    try:
        answer = post(redirect.url)
        assert answer.status == 307
        assert len(redirect.requests) == 1 and elsewhere.requests == []
    finally:
        redirect.close()
        elsewhere.close()


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS receiver on 127.0.0.1 with a certificate for ``hooks.test`` only; records the
    TLS server name and the ``Host`` of each request. Yields (port, client ssl context, seen)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    seen = {"sni": [], "host": []}
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_ctx.sni_callback = lambda sock, server_name, ctx: seen["sni"].append(server_name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["host"].append(self.headers["Host"])
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    try:
        yield server.server_address[1], client_ctx, seen
    finally:
        server.shutdown()
        server.server_close()


def test_tls_and_host_keep_the_urls_name_while_the_connection_goes_to_the_checked_address(tls_receiver):
    port, client_ctx, seen = tls_receiver
    answer = post(f"https://hooks.test:{port}/hook", resolve=resolver("127.0.0.1"), ssl_context=client_ctx)
    assert answer.status == 200
    assert seen == {"sni": ["hooks.test"], "host": [f"hooks.test:{port}"]}
    # The same receiver reached by its address: the certificate (for hooks.test) does not match.
    failed = post(f"https://127.0.0.1:{port}/hook", ssl_context=client_ctx)
    assert isinstance(failed, PostFailed) and failed.message.startswith("TLS error")
    assert seen["host"] == [f"hooks.test:{port}"]                     # nothing was sent to it
