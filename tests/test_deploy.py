"""deploy/ as shipped: nginx (deploy/nginx.conf, TLS) in front of the web process that
deploy/tiktok-connector-web.service starts (gunicorn per the Procfile), the worker unit, and
the client's real address behind the proxy.

Slow clients (50 sending headers at a byte a second, 50 sending bodies at a byte a second)
must leave another client's requests succeeding at their normal latency while they are
connected; ``python -m bench.slow_clients`` prints the same against gunicorn directly, where
they do not.
"""

from __future__ import annotations

import os
import re
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from flask import request

from bench.common import free_port
from bench.slow_clients import (CLIENT_ADDRESS, DEPLOY, NGINX, SLOW_BODIES, SLOW_HEADERS, SlowClients, run_nginx,
                                run_web, timed_requests, unit, unit_environment, web_command)
from connector.app import create_app

ROOT = Path(__file__).resolve().parent.parent
KEY = "tc_deploy_test_static_key_0123456789abcdef"
BOUND = 5.0   # seconds: generous for a loaded CI machine; a stalled web tier takes 10 s and more

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason=f"{NGINX} is not installed (.ci/run installs it)")


def _procfile_web() -> list[str]:
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    line = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", line.split(":", 1)[1])   # the defaults
    return shlex.split(line)


def test_the_web_unit_runs_the_procfile_web_process_on_loopback():
    args = web_command(8000)[3:]
    procfile = _procfile_web()
    assert procfile[0] == "gunicorn"
    bind = procfile.index("--bind")
    assert procfile[bind + 1] == "0.0.0.0:8000"
    procfile[bind + 1] = "127.0.0.1:8000"          # behind nginx, only nginx may reach it
    assert args == procfile[1:]
    assert unit_environment(unit("tiktok-connector-web.service")) == {"CONNECTOR_TRUSTED_PROXIES": "1"}


def test_the_worker_unit_runs_the_procfile_worker(tmp_path):
    exec_start = shlex.split(unit("tiktok-connector-worker.service")["ExecStart"])
    procfile = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("worker:"))
    assert exec_start[0].endswith("/bin/connector") and exec_start[1:] == shlex.split(procfile.split(":", 1)[1])[1:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "PROMETHEUS_"))}
    env.update(PYTHONPATH=str(ROOT), CONNECTOR_PROVIDER="demo", CONNECTOR_DATABASE_URL=f"sqlite:///{tmp_path}/w.db")
    done = subprocess.run([sys.executable, "-m", "connector.cli", *exec_start[1:], "--once"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Polling every 300s per watch" in done.stderr and "(one pass)" in done.stderr


@pytest.fixture
def deployed(tmp_path):
    env = {"CONNECTOR_PROVIDER": "demo", "CONNECTOR_API_KEYS": KEY, "PORT": str(free_port()),
           "CONNECTOR_DATABASE_URL": f"sqlite:///{tmp_path}/deploy.db", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    web_port, log = free_port(), tmp_path / "web.log"
    with run_web(web_port, env, log), run_nginx(web_port) as front:
        yield front, web_port, log


def test_slow_clients_behind_nginx_leave_other_requests_at_their_normal_latency(deployed):
    front, _, _ = deployed
    alone = timed_requests(front.url, KEY, 10)
    assert alone.ok == 10, alone.failed
    with SlowClients(front.https_port, tls=True, key=KEY) as slow:
        time.sleep(2)                                  # every slow connection has dripped bytes
        open_before = slow.open_count()
        busy = timed_requests(front.url, KEY, 20)
        open_after = slow.open_count()
        elapsed = time.monotonic() - slow.first
    assert busy.ok == 20, busy.failed
    assert max(busy.latencies) < BOUND, busy.line()
    # All of them were connected meanwhile, unless nginx's client_header_timeout (10 s for a
    # whole header) had already closed the oldest slowloris ones on a slow machine: never a
    # slow body (each byte restarts client_body_timeout).
    assert open_before >= open_after >= SLOW_BODIES
    if elapsed < 9:
        assert open_after == SLOW_HEADERS + SLOW_BODIES, open_after


def test_plain_http_redirects_to_https(deployed):
    front, _, _ = deployed
    r = httpx.get(f"http://127.0.0.1:{front.http_port}/healthz?x=1", headers={"Host": "connector.example.com"})
    assert r.status_code == 301 and r.headers["Location"] == "https://connector.example.com/healthz?x=1"


def test_the_service_sees_the_clients_real_address_behind_nginx(deployed):
    front, web_port, log = deployed
    verify = ssl.create_default_context(cafile=str(front.cert))   # nginx's certificate, checked
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=verify)
    with httpx.Client(transport=transport) as client:
        r = client.get(f"{front.url}/healthz?from=nginx", headers={"Host": "127.0.0.1"})
        assert r.status_code == 200 and r.json()["provider"] == "demo"
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        assert client.get(f"http://127.0.0.1:{web_port}/healthz?from=direct").status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "from=direct" not in log.read_text():
        time.sleep(0.1)
    lines = log.read_text().splitlines()
    via_nginx = next(l for l in lines if "from=nginx" in l)
    direct = next(l for l in lines if "from=direct" in l)
    # gunicorn's access log: the client's address (nginx connects from 127.0.0.1), both ways.
    assert via_nginx.startswith(f"{CLIENT_ADDRESS} ") and direct.startswith(f"{CLIENT_ADDRESS} ")


@pytest.mark.parametrize("trusted, seen", [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_forwarded_addresses_are_believed_only_when_configured(make_settings, trusted, seen):
    app = create_app(make_settings(trusted_proxies=trusted))
    app.add_url_rule("/whoami", "whoami", lambda: request.remote_addr)
    client = app.test_client()
    r = client.get("/whoami", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert r.get_data(as_text=True) == seen
    app.extensions["connector"].close()


def test_the_setting_is_read_from_the_environment():
    from connector.config import ConfigError, Settings
    assert Settings.from_env({"CONNECTOR_TRUSTED_PROXIES": "1"}).trusted_proxies == 1
    assert Settings.from_env({}).trusted_proxies == 0
    with pytest.raises(ConfigError, match="CONNECTOR_TRUSTED_PROXIES must be a whole number"):
        Settings.from_env({"CONNECTOR_TRUSTED_PROXIES": "yes"})
    assert (DEPLOY / "env.example").exists()
