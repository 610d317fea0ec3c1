"""Helpers of the trigger tests: a webhook receiver, the Standard Webhooks verifier, fixtures.

The receiver is a real threaded HTTP server on 127.0.0.1 that records every request (and
when it arrived) and answers what ``respond(request)`` says: a status, ``(status, headers)``
or ``(status, headers, body)`` (200 by default).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError  # noqa: F401 (tests import it from here)

from connector.config import Settings, WorkerSettings
from connector.trigger.tables import watches
from tests.conftest import TEST_SECRET_KEY
from tests.fakes import FakeDumpling, FakeWorld

HANDLE = "stoolpresidente"


@dataclass
class Received:
    headers: dict
    body: bytes
    status: int
    at: float = 0.0       # time.time() of its arrival

    @property
    def json(self):
        return json.loads(self.body)


class Receiver:
    def __init__(self):
        self.requests: list[Received] = []
        self.respond = lambda received: 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received = Received({k.lower(): v for k, v in self.headers.items()}, body, 0, time.time())
                answer = receiver.respond(received)
                status, headers, content = (tuple(answer) + (b"",))[:3] if isinstance(answer, tuple) \
                    else (answer, {}, b"")
                received.status = status
                with receiver.lock:
                    receiver.requests.append(received)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def delivered(self) -> list[dict]:
        """Bodies the receiver accepted (2xx), in arrival order."""
        return [r.json for r in self.requests if 200 <= r.status < 300]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def verify(secret: str, headers: dict, body: bytes) -> dict:
    """The delivery's JSON once the official Standard Webhooks verifier (the
    ``standardwebhooks`` package) accepts its signature and timestamp; else
    ``WebhookVerificationError``."""
    return Webhook(secret).verify(body, dict(headers))


def trigger_settings(fake: FakeDumpling, database_url: str, **overrides) -> Settings:
    base = dict(provider="dumpling", dumpling_api_key=fake.api_key, dumpling_base_url=fake.url,
                database_url=database_url, secret_key=TEST_SECRET_KEY, allow_private_targets=True, poll_interval=60,
                webhook_retry_schedule=(0, 0, 1), upstream_max_attempts=1,
                worker=WorkerSettings(**{"page_budget": 10, "poll_threads": 4, "delivery_concurrency": 4,
                                         **overrides.pop("worker", {})}))
    base.update(overrides)
    return Settings(**base)


def make_due(svc) -> None:
    """Every watch is due now by its own schedule (instead of waiting out the poll interval)."""
    with svc.store.begin() as conn:
        conn.execute(watches.update().values(next_poll_at=0, scheduled_at=0))


def follower_pages(fake: FakeDumpling) -> int:
    return sum(1 for r in fake.requests if r.endpoint == "followers")


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld(seed=11)
    world.add_account(HANDLE, followers=75)
    return world


@pytest.fixture
def dumpling(world):
    with FakeDumpling(world) as fake:
        yield fake


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def receivers():
    """Make as many receivers as a test needs: ``receivers()``; all closed after it."""
    made: list[Receiver] = []

    def make_one() -> Receiver:
        made.append(Receiver())
        return made[-1]
    yield make_one
    for r in made:
        r.close()


def watch_row(svc):
    with svc.store.connect() as conn:
        return conn.execute(sa.select(watches)).mappings().first()


class NeverAnswers:
    """Receivers that take the connection and never answer: listening sockets on
    ``address`` that are never accepted (the kernel completes each connection, the request
    sits unread), one per hook, so each attempt waits for its deadline."""

    def __init__(self, address: str, count: int):
        self.socks = [socket.create_server((address, 0), backlog=64) for _ in range(count)]
        self.urls = [f"http://{address}:{s.getsockname()[1]}/hook" for s in self.socks]

    def close(self):
        for sock in self.socks:
            sock.close()


class BadReceiver:
    """A receiver that misbehaves on a raw socket, one thread per connection; records when
    each connection opened and closed.

    - ``drip_headers``: sends ``HTTP/1.1 200 OK`` one byte every ``interval`` s (never finishes);
    - ``drip_body``: a 200 with ``Content-Length`` 1 MB, then one body byte every ``interval`` s;
    - ``endless``: a chunked 200 whose body never ends, sent as fast as the socket takes it.
    """

    def __init__(self, mode: str, interval: float = 0.5):
        import socket
        self.mode, self.interval = mode, interval
        self.connections: list[list[float | None]] = []     # [opened, closed]
        self.sent = 0
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        entry = [time.monotonic(), None]
        with self.lock:
            self.connections.append(entry)
        try:
            conn.settimeout(5)
            conn.recv(65536)                                  # the request (its size does not matter)
            if self.mode == "drip_headers":
                payload, step = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1
            elif self.mode == "drip_body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
                payload, step = b"x" * 1048576, 1
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
                while not self.closing.is_set():
                    conn.sendall(chunk)
                    with self.lock:
                        self.sent += len(chunk)
                return
            for i in range(0, len(payload), step):
                if self.closing.wait(self.interval):
                    return
                conn.sendall(payload[i:i + step])
                with self.lock:
                    self.sent += step
        except OSError:
            pass                                              # the sender gave up and closed
        finally:
            entry[1] = time.monotonic()
            conn.close()

    def open_connections(self) -> int:
        with self.lock:
            return sum(1 for _, closed in self.connections if closed is None)

    def close(self):
        self.closing.set()
        self.sock.close()
        self.thread.join(5)


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")
