"""GET /metrics: real requests, polls and deliveries, then a scrape parsed with
prometheus_client's own parser; counts match what was done, across processes too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from connector.app import create_app
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.processes import CLI, clean_env, free_port, sample, wait_up
from tests.trigger_kit import Receiver, make_due


def scrape(url: str, **kwargs) -> str:
    r = httpx.get(f"{url}/metrics", timeout=10, **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return r.text


def test_requests_upstream_calls_and_credits_count_what_was_done(demo):
    before = scrape(demo.url)
    for _ in range(3):
        assert demo.post("/api/v1/get-tiktok-profile", {"handle": "brand", "requestSource": "ZAPIER"}).status_code == 200
    demo.post("/api/v1/get-tiktok-user-followers", {"handle": "brand"}, headers={"X-Request-Source": "MAKE_DOT_COM"})
    demo.post("/api/v1/get-tiktok-profile", {"handle": "demo_private"})
    demo.post("/api/v1/get-tiktok-profile", {"handle": "brand"}, headers={"X-Request-Source": "SOMETHING"})
    demo.http.get("/api/v1/hooks/hook_nothere")
    demo.http.get("/no/such/route")
    after = scrape(demo.url)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    profile = dict(route="/api/v1/get-tiktok-profile", method="POST")
    assert delta("connector_http_requests_total", **profile, status="200", request_source="ZAPIER") == 3
    assert delta("connector_http_requests_total", route="/api/v1/get-tiktok-user-followers", status="200",
                 request_source="MAKE_DOT_COM") == 1
    assert delta("connector_http_requests_total", **profile, status="404", request_source="API") == 1
    assert delta("connector_http_requests_total", **profile, status="400", request_source="other") == 1
    # The route is the URL rule, never the raw path: label values stay bounded.
    assert delta("connector_http_requests_total", route="/api/v1/hooks/<hook_id>", status="404") == 1
    assert delta("connector_http_requests_total", route="(unmatched)", status="404") == 1
    assert "hook_nothere" not in after and "/no/such/route" not in after

    assert delta("connector_upstream_call_seconds_count", provider="demo", operation="get_profile", outcome="ok") == 3
    assert delta("connector_upstream_call_seconds_count", provider="demo", operation="get_profile",
                 outcome="not_found") == 1
    assert delta("connector_upstream_call_seconds_count", provider="demo", operation="list_followers",
                 outcome="ok") == 1
    assert delta("connector_credits_spent_total", what="get_profile") == 3 * 2      # 2 credits a profile
    assert delta("connector_credits_spent_total", what="list_followers") == 1


def test_polls_deliveries_lag_and_pending_deliveries(serve, make_settings):
    clock = ManualClock()
    receiver = Receiver()
    live = serve(make_settings(allow_private_targets=True, clock=clock, webhook_retry_schedule=(60, 60)))
    svc = live.services
    key, _ = svc.keys.create(name="m")
    try:
        with live.client(key) as http:
            r = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": "brand",
                                                 "targetUrl": receiver.url})
            assert r.status_code == 201, r.text
        before = scrape(live.url)
        receiver.respond = lambda received: 500
        clock.advance(600)                      # "brand" gains a follower every 67 s
        make_due(svc)
        polled = poll_due_watches(svc)
        assert polled.events >= 5
        pending = scrape(live.url)
        assert sample(pending, "connector_deliveries_pending") == polled.events
        assert sample(pending, "connector_deliveries_due") == polled.events
        assert sample(pending, "connector_database_up") == 1
        deliver_due_webhooks(svc)                        # every attempt fails: each is retried
        receiver.respond = lambda received: 204
        clock.advance(100)                                   # the retries fall due
        deliver_due_webhooks(svc)
        after = scrape(live.url)
    finally:
        receiver.close()

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("connector_polls_total", where="worker", outcome="ok") == 1
    assert delta("connector_poll_pages_total", where="worker") == polled.pages
    assert delta("connector_new_events_total", where="worker") == polled.events
    assert delta("connector_credits_spent_total", what="new_follower") == polled.pages
    assert delta("connector_deliveries_total", outcome="retry") == polled.events
    assert delta("connector_deliveries_total", outcome="delivered") == polled.events
    assert delta("connector_delivery_lag_seconds_count") == polled.events
    assert sample(after, "connector_deliveries_pending") == 0
    assert len(receiver.delivered()) == polled.events


@pytest.mark.parametrize("headers, remote, status, fragment", [
    ({}, "10.1.2.3", 403, "set CONNECTOR_METRICS_TOKEN"),
    ({"X-Forwarded-For": "203.0.113.9"}, "127.0.0.1", 403, "no proxy"),
    ({}, "127.0.0.1", 200, None),
])
def test_without_a_token_only_this_machine_may_scrape(make_settings, headers, remote, status, fragment):
    app = create_app(make_settings())
    r = app.test_client().get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert r.status_code == status
    if fragment:
        assert fragment in r.get_json()["error"]
    app.extensions["connector"].close()


@pytest.mark.parametrize("authorization, status", [
    (None, 401), ("Bearer wrong-token-0000000", 401), ("Basic c2VjcmV0", 401),
    ("Bearer s3cret-metrics-token-1", 200),
])
def test_with_a_token_every_scrape_needs_it(make_settings, authorization, status):
    app = create_app(make_settings(metrics_token="s3cret-metrics-token-1"))
    headers = {"Authorization": authorization} if authorization else {}
    r = app.test_client().get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert r.status_code == status
    if status == 401:
        assert "CONNECTOR_METRICS_TOKEN" in r.get_json()["error"] and "s3cret" not in r.get_json()["error"]
    app.extensions["connector"].close()


def test_a_bad_method_on_metrics_is_a_405(demo):
    r = demo.http.post("/metrics")
    assert r.status_code == 405 and "use GET" in r.json()["error"]


# -- several processes -------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path):
    return clean_env(f"sqlite:///{tmp_path / 'm.db'}", CONNECTOR_PROVIDER="demo",
                     CONNECTOR_API_KEYS="tc_metrics_test_key")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)


def test_two_gunicorn_workers_add_up(env, tmp_path):
    port = free_port()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    (tmp_path / "prom").mkdir()
    proc = subprocess.Popen([*CLI, "serve", "--workers", "2", "--threads", "2", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{url}/healthz", proc, timeout=60)
        pids = set()

        def profile():
            with httpx.Client(timeout=30) as http:   # a connection each, so both workers take some
                r = http.post(f"{url}/api/v1/get-tiktok-profile", json={"handle": "brand", "requestSource": "ZAPIER"},
                              headers={"Authorization": "Bearer tc_metrics_test_key"})
                assert r.status_code == 200

        threads = [threading.Thread(target=profile) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        text = scrape(url)
        pids = {f.split("_")[-1] for f in os.listdir(tmp_path / "prom") if f.startswith("counter_")}
    finally:
        stop(proc)
    assert sample(text, "connector_http_requests_total", route="/api/v1/get-tiktok-profile", status="200",
                  request_source="ZAPIER") == 24
    assert sample(text, "connector_upstream_call_seconds_count", operation="get_profile") == 24
    assert len(pids) == 2, pids     # both workers counted, and the scrape summed them


def test_a_separate_worker_serves_its_own_metrics(env):
    port = free_port()
    proc = subprocess.Popen([*CLI, "poll", "--metrics-port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{url}/metrics", proc, timeout=60)
        text = scrape(url)
        assert sample(text, "connector_database_up") == 1 and sample(text, "connector_deliveries_pending") == 0
        assert httpx.get(f"{url}/metrics", headers={"X-Forwarded-For": "1.2.3.4"}).status_code == 403
        assert httpx.get(f"{url}/other").status_code == 404
        second = subprocess.run([*CLI, "poll", "--metrics-port", str(port)], env=env, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 1 and f"Cannot serve metrics on 127.0.0.1:{port}" in second.stderr
    finally:
        stop(proc)


def test_an_unusable_multiprocess_folder_is_refused_in_words(env, tmp_path):
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "missing")
    done = subprocess.run([*CLI, "poll", "--once"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "PROMETHEUS_MULTIPROC_DIR must be a folder this process can write" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_procfile_web_process_adds_its_workers_up(env):
    """The Procfile's own gunicorn line (not `connector serve`): two workers, one sum."""
    procfile = Path(__file__).resolve().parent.parent / "Procfile"
    line = next(l for l in procfile.read_text().splitlines() if l.startswith("web:"))
    port = free_port()
    env.update(PORT=str(port), WEB_CONCURRENCY="2", WEB_THREADS="2")
    command = os.path.expandvars(line.split(":", 1)[1].strip().replace("${WEB_CONCURRENCY:-2}", "$WEB_CONCURRENCY")
                                 .replace("${WEB_THREADS:-8}", "$WEB_THREADS").replace("${PORT:-8000}", "$PORT"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(command, shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{url}/healthz", proc, timeout=60)

        def profile():
            with httpx.Client(timeout=30) as http:
                assert http.post(f"{url}/api/v1/get-tiktok-profile", json={"handle": "brand"},
                                 headers={"Authorization": "Bearer tc_metrics_test_key"}).status_code == 200

        threads = [threading.Thread(target=profile) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        text = scrape(url)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
    assert sample(text, "connector_http_requests_total", route="/api/v1/get-tiktok-profile", status="200") == 20
