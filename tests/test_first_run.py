"""A new user's first run, as the README tells it: `connector serve --demo`, a hook to a
receiver of their own, a signed delivery; and the CLI's plain words when something is off."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from connector.cli.receive import make_server
from connector.providers.demo import EPOCH, DemoProvider
from connector.services import instance_path
from tests.fakes import FakeDumpling, FakeWorld
from tests.processes import CLI, clean_env, free_port, run, sample, wait_up


@pytest.fixture
def env(tmp_path):
    # HOME: nothing of ours may land in a home folder
    clean = clean_env(f"sqlite:///{tmp_path / 'first.db'}", HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return clean


class Lines:
    """A process's output lines, read on a thread so a test can wait for one with a deadline."""

    def __init__(self, proc):
        self.proc, self.lines, self.queue = proc, [], queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.queue.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got:\n" + "".join(self.lines))


def start(env, *args):
    proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, Lines(proc)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout is not None:
        time.sleep(0.1)          # the reader thread sees the end of the output first
        proc.stdout.close()


def handle_with_a_follower_soon(low: float = 4.0, high: float = 12.0) -> str:
    """A demo account whose next follower arrives between ``low`` and ``high`` seconds from now,
    so the test sees a real new follower without waiting minutes."""
    now = time.time()
    for n in range(2000):
        handle = f"firstrun{n}"
        interval = DemoProvider._interval(handle, "followers")
        wait = interval - (now - EPOCH) % interval
        if low <= wait <= high:
            return handle
    raise AssertionError("no demo handle fits")


def test_serve_demo_runs_the_whole_product_and_a_signed_delivery_reaches_the_users_receiver(env, tmp_path):
    port, receiver_port = free_port(), free_port()
    env.update(CONNECTOR_POLL_INTERVAL="1", CONNECTOR_POLL_IDLE_SLEEP="0.05")
    serve, out = start(env, "serve", "--demo", "--port", str(port))
    receiver = None
    try:
        key = out.wait_for(r"export KEY=(\S+)", 60).group(1)
        steps = out.wait_for(r"curl -s http://127\.0\.0\.1:\d+/api/v1/hooks .*", 10).group(0)
        out.wait_for(r"connector receive --port 9000 --secret", 10)
        assert "every 1 s" in "".join(out.lines)
        wait_up(f"http://127.0.0.1:{port}/healthz")

        # The printed hook step, pointed at a receiver on a free port and a handle about to gain a follower.
        body = json.loads(re.search(r"-d '(\{.*\})'", steps).group(1))
        assert body["targetUrl"] == "http://127.0.0.1:9000/"
        handle = handle_with_a_follower_soon()
        body.update(handle=handle, targetUrl=f"http://127.0.0.1:{receiver_port}/")
        created = httpx.post(f"http://127.0.0.1:{port}/api/v1/hooks", json=body,
                             headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert created.status_code == 201, created.text    # a loopback receiver is accepted in the demo
        secret = created.json()["secret"]

        receiver, received = start(env, "receive", "--port", str(receiver_port), "--secret", secret)
        line = received.wait_for(r"^OK .*", 45).group(0)
        assert f"followed @{handle}" in line and "signature verified" in line

        # The worker's polls and deliveries show in the web service's /metrics (one folder, several processes).
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert sample(scraped, "connector_deliveries_total", outcome="delivered") >= 1
        assert sample(scraped, "connector_polls_total", where="worker", outcome="ok") >= 1
        assert sample(scraped, "connector_delivery_lag_seconds_count") >= 1
        assert sample(scraped, "connector_http_requests_total", route="/api/v1/hooks", method="POST",
                      status="201", request_source="API") == 1
    finally:
        stop(serve)
        if receiver is not None:
            stop(receiver)
    assert serve.returncode == 0
    assert not (tmp_path / "home" / ".gunicorn").exists()   # the control socket is not in the home folder


def test_the_poller_stops_with_the_server(env):
    port = free_port()
    serve, out = start(env, "serve", "--demo", "--port", str(port))
    try:
        out.wait_for(r"export KEY=", 60)
        wait_up(f"http://127.0.0.1:{port}/healthz")
        out.wait_for(r"Polling every 30s", 30)       # the worker started, on the demo's interval
        pollers = subprocess.run(["pgrep", "-P", str(serve.pid), "-f", "connector.cli poll"],
                                 capture_output=True, text=True).stdout.split()
        assert len(pollers) == 1
    finally:
        stop(serve)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pollers[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pollers[0]}").exists() or "Z" in Path(f"/proc/{pollers[0]}/stat").read_text().split()[2]


def test_a_refused_target_names_the_variable_and_both_processes(demo):
    r = demo.post("/api/v1/hooks", {"event": "new_follower", "handle": "brand",
                                    "targetUrl": "http://127.0.0.1:9000/"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert "CONNECTOR_ALLOW_PRIVATE_TARGETS=1" in error
    assert "`connector serve`" in error and "`connector poll`" in error and "--demo" in error


def test_a_taken_port_is_a_plain_error_that_suggests_another(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(env, "serve", "--port", str(port), timeout=30)
    assert done.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_honours_port_and_keeps_its_control_socket_in_the_instance_folder(env, tmp_path):
    port = free_port()
    env.update(PORT=str(port), CONNECTOR_PROVIDER="demo")
    proc, out = start(env, "serve")
    try:
        out.wait_for(rf"Serving on http://127\.0\.0\.1:{port} ", 60)
        assert wait_up(f"http://127.0.0.1:{port}/healthz").json()["provider"] == "demo"
        ctl = instance_path() / f"gunicorn-{port}.ctl"
        deadline = time.monotonic() + 10
        while not ctl.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ctl.exists()
    finally:
        stop(proc)
    assert not (tmp_path / "home" / ".gunicorn").exists()


@pytest.mark.parametrize("args, extra, fragment", [
    (["serve"], {"PORT": "eighty"}, "PORT must be a port number from 1 to 65535, got 'eighty'"),
    (["serve"], {"PORT": "70000"}, "PORT must be a port number from 1 to 65535"),
    (["serve", "--port", "0"], {}, "Invalid value for '--port'"),
    (["serve", "--workers", "0"], {}, "Invalid value for '--workers'"),
    (["serve", "--host", "no such host.invalid"], {}, "is not an address of this machine"),
    (["receive", "--secret", "hunter2"], {}, "Invalid value for --secret"),
    (["poll", "--metrics-port", "-1"], {}, "Invalid value for '--metrics-port'"),
])
def test_bad_options_are_cli_errors(env, args, extra, fragment):
    env.update(extra)
    done = run(env, *args, timeout=30)
    assert done.returncode != 0
    assert fragment in done.stderr and "Traceback" not in done.stderr


def test_version(env):
    done = run(env, "--version")
    assert done.returncode == 0 and re.fullmatch(r"connector \S+\n", done.stdout)


def test_followers_without_a_provider_suggests_the_demo_and_never_support(env):
    done = run(env, "followers", "stoolpresidente")
    assert done.returncode == 1
    assert "--provider demo" in done.stderr and "DUMPLING_API_KEY" in done.stderr
    assert "contact support" not in done.stderr.lower()


def test_followers_with_refused_credentials_says_what_to_check_not_support(env):
    with FakeDumpling(FakeWorld(seed=3)) as fake:
        env.update(DUMPLING_API_KEY="sk_wrong_key_123", DUMPLING_BASE_URL=fake.url)
        done = run(env, "followers", "stoolpresidente")
    assert done.returncode == 1
    assert "refused this server's credentials: check DUMPLING_API_KEY" in done.stderr
    assert "contact support" not in done.stderr.lower() and "sk_wrong_key_123" not in done.stderr


def test_csv_writes_booleans_as_true_and_false(env, tmp_path):
    out = tmp_path / "f.csv"
    done = run(env, "followers", "stoolpresidente", "--provider", "demo", "--format", "csv", "--limit", "300",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300
    assert {r["verified"] for r in rows} | {r["privateAccount"] for r in rows} == {"true", "false"}


# -- connector check ---------------------------------------------------------------------------

def test_check_reports_settings_masked_the_database_and_a_provider_that_answers(env):
    world = FakeWorld(seed=5)
    world.add_account("tiktok", followers=3)
    with FakeDumpling(world) as fake:
        env.update(DUMPLING_API_KEY=fake.api_key, DUMPLING_BASE_URL=fake.url, CONNECTOR_METRICS_TOKEN="m3tr1cs-t0ken-xyz",
                   CONNECTOR_POLL_INTERVAL="60")
        done = run(env, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert fake.api_key not in out and "m3tr1cs-t0ken-xyz" not in out
    assert re.search(r"DUMPLING_API_KEY\s+set\n", out) and re.search(r"CONNECTOR_METRICS_TOKEN\s+set\n", out)
    assert re.search(r"CONNECTOR_POLL_INTERVAL\s+60\n", out)
    assert re.search(r"CONNECTOR_DEFAULT_RATE_LIMIT\s+120 \(default\)", out)
    assert "empty: the schema" in out                       # a new database
    assert re.search(r"dumpling \(default\): answers \(\d+ ms\)", out)
    assert out.rstrip().endswith("All good.")
    assert any(r.endpoint == "profile" for r in fake.requests)


def test_check_says_what_is_wrong_and_exits_1(env):
    with FakeDumpling(FakeWorld(seed=5)) as fake:
        env.update(DUMPLING_API_KEY="sk_not_the_key_42", DUMPLING_BASE_URL=fake.url,
                   CONNECTOR_DATABASE_URL="postgresql+psycopg://app:hunter2pass@127.0.0.1:1/db")
        done = run(env, "check")
    assert done.returncode == 1
    assert "hunter2pass" not in done.stdout + done.stderr and "sk_not_the_key_42" not in done.stdout + done.stderr
    assert "postgresql+psycopg://app:***@127.0.0.1:1/db" in done.stdout
    assert "Cannot reach the PostgreSQL database at 127.0.0.1:1 (connection refused)" in done.stdout
    assert "refused this server's credentials: check DUMPLING_API_KEY" in done.stdout
    assert "2 problems found" in done.stderr


def test_check_without_a_provider_suggests_the_demo(env):
    done = run(env, "check")
    assert done.returncode == 1 and "--provider demo" in done.stdout


# -- connector receive ---------------------------------------------------------------------------

def _signed(secret: str, body: bytes, msg_id="evt_1") -> dict:
    stamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": f"v1,{mac}",
            "content-type": "application/json"}


def test_receive_verifies_signatures_and_refuses_a_forged_one():
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    lines: list[str] = []
    server = make_server("127.0.0.1", 0, secret, echo=lines.append)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    body = json.dumps({"id": "evt_1", "event": "new_follower", "handle": "brand",
                       "follower": {"uniqueId": "sunny.otter1"}, "detectedAt": "2026-01-01T00:00:00Z"}).encode()
    try:
        good = httpx.post(url, content=body, headers=_signed(secret, body))
        forged = httpx.post(url, content=body, headers=_signed("whsec_" + base64.b64encode(b"x" * 24).decode(), body))
        unsigned = httpx.post(url, content=body)
        assert httpx.get(url).status_code == 200
    finally:
        server.shutdown()
        server.server_close()
    assert (good.status_code, forged.status_code, unsigned.status_code) == (204, 401, 401)
    assert lines[0].startswith("OK ") and "@sunny.otter1 followed @brand" in lines[0]
    assert lines[1].startswith("BAD") and "BAD SIGNATURE" in lines[1]
    assert "UNSIGNED" in lines[2]


def test_receive_on_a_taken_port_says_so(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(env, "receive", "--port", str(port), timeout=30)
    assert done.returncode == 1 and f"Port {port} on 127.0.0.1 is already in use" in done.stderr
