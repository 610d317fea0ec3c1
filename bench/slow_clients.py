"""Slow clients against the web process, behind deploy/nginx.conf and without it.

``python -m bench.slow_clients`` starts the web process as deploy/tiktok-connector-web.service
runs it (gunicorn per the Procfile, demo provider, a temporary SQLite file), then for each
front (nginx with TLS from ``deploy/nginx.conf``, and gunicorn directly) measures another
client's requests alone, and again while 50 slowloris connections (headers at a byte a second)
and 50 slow request bodies (a byte a second) are connected. It prints how many of that
client's requests succeeded within their 10 s deadline and their latencies.

What ``tests/test_deploy.py`` uses too: :func:`render_site` (the deploy file with test ports
and a certificate), :func:`web_command` (the unit's ExecStart), :func:`run_nginx`,
:class:`SlowClients` and :func:`timed_requests`.
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import os
import shlex
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.processes import stop

from .common import free_port, percentile, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX = "/usr/sbin/nginx"
SLOW_HEADERS = 50
SLOW_BODIES = 50
DEADLINE = 10.0          # seconds a normal request may take before it counts as timed out
CLIENT_ADDRESS = "127.0.0.7"   # the normal client's own loopback address, told apart from nginx's


# -- the deploy files, as tests and this benchmark run them ----------------------------------

def unit(name: str) -> dict[str, str]:
    """A systemd unit's [Service] section (``Environment=`` lines joined)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(DEPLOY / name)
    return dict(parser["Service"])


def unit_environment(service: dict[str, str]) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(service.get("Environment", "")))


def web_command(port: int) -> list[str]:
    """deploy/tiktok-connector-web.service's ExecStart with this interpreter and ``port``."""
    args = shlex.split(unit("tiktok-connector-web.service")["ExecStart"])
    assert args[0].endswith("/bin/gunicorn"), args[0]
    bind = args.index("--bind")
    assert args[bind + 1] == "127.0.0.1:8000", args[bind + 1]
    args[bind + 1] = f"127.0.0.1:{port}"
    return [sys.executable, "-m", "gunicorn", *args[1:]]


def self_signed(folder: Path, host: str = "connector.example.com") -> tuple[Path, Path]:
    """A throwaway certificate and key for ``host`` (and 127.0.0.1)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def render_site(upstream_port: int, https_port: int, http_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx.conf with test ports and certificate; every replaced line must exist, so the
    file cannot drift from what is tested."""
    text = (DEPLOY / "nginx.conf").read_text()
    replacements = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "/etc/letsencrypt/live/connector.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/connector.example.com/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Front:
    https_port: int
    http_port: int
    cert: Path
    prefix: Path
    pid: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


@contextmanager
def run_nginx(upstream_port: int):
    """nginx from a temporary prefix serving deploy/nginx.conf in front of ``upstream_port``."""
    if not os.path.exists(NGINX):
        raise RuntimeError(f"{NGINX} is missing: apt-get install nginx-light (.ci/run does)")
    with tempfile.TemporaryDirectory(prefix="deploy-nginx-") as tmp:
        prefix = Path(tmp)
        prefix.chmod(0o755)
        cert, key = self_signed(prefix)
        https_port, http_port = free_port(), free_port()
        (prefix / "site.conf").write_text(render_site(upstream_port, https_port, http_port, cert, key))
        temps = "".join(f"    {kind}_temp_path {prefix}/{kind}_temp;\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;\n" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(
            f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
            f"error_log {prefix}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
            f"http {{\n    access_log {prefix}/access.log;\n{temps}    include {prefix}/site.conf;\n}}\n")
        proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                 "-e", str(prefix / "error.log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 15
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"nginx would not start: {proc.stderr.read().decode(errors='replace')}"
                                       f"{(prefix / 'error.log').read_text(errors='replace')}")
                try:
                    wait_for_port(https_port, timeout=0.2)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
            yield Front(https_port, http_port, cert, prefix, proc.pid)
        finally:
            stop(proc, 10)
            proc.stderr.close()


@contextmanager
def run_web(port: int, env: dict[str, str], log: Path):
    """The web unit's ExecStart (gunicorn per the Procfile) on ``port``; stdout to ``log``."""
    service = unit("tiktok-connector-web.service")
    full = {**os.environ, "PYTHONPATH": str(ROOT), **unit_environment(service), **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(web_command(port), env=full, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the web process did not answer: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            yield proc
        finally:
            stop(proc, 30)


# -- slow clients ------------------------------------------------------------------------------

class SlowClients:
    """``headers`` connections sending a request's headers a byte a second (never finishing)
    and ``bodies`` sending complete headers then a large body a byte a second."""

    def __init__(self, port: int, *, tls: bool, headers: int = SLOW_HEADERS, bodies: int = SLOW_BODIES,
                 key: str = ""):
        self.port, self.tls, self.counts = port, tls, (headers, bodies)
        self.key = key
        self.socks: list[socket.socket] = []
        self.closed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._context = ssl.create_default_context()   # once: loading the CA store is slow
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE

    def _connect(self) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if not self.tls:
            return raw
        return self._context.wrap_socket(raw, server_hostname="connector.example.com")

    def __enter__(self) -> "SlowClients":
        headers, bodies = self.counts
        self.first = time.monotonic()
        for i in range(headers + bodies):
            sock = self._connect()
            if i >= headers:   # complete headers, then the body drips
                sock.sendall((f"POST /api/v1/get-tiktok-user-followers HTTP/1.1\r\nHost: connector.example.com\r\n"
                              f"Authorization: Bearer {self.key}\r\nContent-Type: application/json\r\n"
                              "Content-Length: 100000\r\n\r\n{").encode())
            else:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: connector.example.com\r\nX-Slow: ")
            sock.setblocking(False)
            self.socks.append(sock)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _drip(self) -> None:
        while not self._stop.wait(1.0):
            for sock in self.socks:
                try:
                    sock.send(b"a")
                except (BlockingIOError, ssl.SSLWantWriteError):
                    pass
                except OSError:
                    pass   # closed by the server: counted by open_count()

    def open_count(self) -> int:
        """Connections the server has neither answered nor closed."""
        open_ = 0
        for sock in self.socks:
            try:
                data = sock.recv(1024)   # non-blocking: TLS records that are not data (session
            except (BlockingIOError, ssl.SSLWantReadError):   # tickets) read as "nothing yet"
                open_ += 1
                continue
            except OSError:
                continue
            if data is None:
                open_ += 1
        return open_

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.socks:
            try:
                sock.close()
            except OSError:
                pass


@dataclass
class Timings:
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def line(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"{self.ok} ok, {len(self.failed)} failed"
        return (f"{self.ok}/{self.ok + len(self.failed)} ok within {DEADLINE:g} s; latency p50 "
                f"{percentile(lat, 50) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")


def timed_requests(base_url: str, key: str, count: int = 20, *, verify: str | bool = False) -> Timings:
    """``count`` requests of another client (alternately GET /healthz and a followers page)
    from :data:`CLIENT_ADDRESS`, each with a :data:`DEADLINE`; a fresh connection each time."""
    result = Timings()
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=verify)
    with httpx.Client(transport=transport, timeout=DEADLINE, headers={"Connection": "close"}) as client:
        for i in range(count):
            started = time.monotonic()
            try:
                if i % 2:
                    r = client.post(f"{base_url}/api/v1/get-tiktok-user-followers",
                                    headers={"Authorization": f"Bearer {key}"},
                                    json={"handle": "stoolpresidente", "count": 3})
                else:
                    r = client.get(f"{base_url}/healthz")
                if r.status_code == 200:
                    result.ok += 1
                    result.latencies.append(time.monotonic() - started)
                else:
                    result.failed.append(f"{r.status_code} {r.text[:100]}")
            except httpx.HTTPError as exc:
                result.failed.append(f"{type(exc).__name__} after {time.monotonic() - started:.1f} s")
    return result


# -- the benchmark -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10, help="the other client's requests per phase")
    args = parser.parse_args(argv)
    key = "tc_bench_slow_clients_static_key_0123456789"
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        env = {"CONNECTOR_PROVIDER": "demo", "CONNECTOR_API_KEYS": key,
               "CONNECTOR_DATABASE_URL": f"sqlite:///{tmp}/bench.db", "PORT": str(free_port()),
               "PROMETHEUS_MULTIPROC_DIR": tmp}
        web_port = free_port()
        with run_web(web_port, env, Path(tmp) / "web.log"), run_nginx(web_port) as front:
            rows = []
            for name, port, base, tls in (("behind nginx (deploy/nginx.conf, TLS)", front.https_port, front.url, True),
                                          ("gunicorn directly", web_port, f"http://127.0.0.1:{web_port}", False)):
                alone = timed_requests(base, key, args.requests)
                with SlowClients(port, tls=tls, key=key) as slow:
                    time.sleep(2)   # every slow client has started dripping
                    busy = timed_requests(base, key, args.requests)
                    still = slow.open_count()
                rows.append((name, alone, busy, still))
    print(f"Another client's {args.requests} requests (GET /healthz and a followers page, alternately), "
          f"alone and beside {SLOW_HEADERS} slowloris connections (headers at a byte a second) and "
          f"{SLOW_BODIES} slow request bodies (a byte a second); the web process as "
          "deploy/tiktok-connector-web.service runs it (gunicorn, 2 workers x 8 threads, gthread):")
    for name, alone, busy, still in rows:
        print(f"  {name}:")
        print(f"    alone:             {alone.line()}")
        print(f"    with slow clients: {busy.line()}  ({still} of {SLOW_HEADERS + SLOW_BODIES} slow "
              "connections still open at the end)")


if __name__ == "__main__":
    main()
