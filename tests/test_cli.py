"""The `connector` command as an operator uses it: real subprocesses, a real SQLite file."""

import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.processes import clean_env, free_port, run


@pytest.fixture
def env(tmp_path):
    return clean_env(f"sqlite:///{tmp_path / 'cli.db'}")


def test_keys_create_list_topup_revoke(env):
    created = run(env, "keys", "create", "--name", "agency", "--credits", "5", "--rate-limit", "30")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"tc_[A-Za-z0-9_-]{40,}", key)
    key_id = re.search(r"Created (key_[0-9a-f]+)", created.stdout).group(1)

    listed = run(env, "keys", "list")
    assert key_id in listed.stdout and "agency" in listed.stdout and key not in listed.stdout
    assert re.search(rf"{key_id}\s+tc_\S+\s+agency\s+5\s+30\s+active", listed.stdout)

    topped = run(env, "keys", "topup", key_id, "--credits", "10")
    assert topped.stdout.strip() == f"{key_id} now has 15 credits."

    revoked = run(env, "keys", "revoke", key_id)
    assert revoked.returncode == 0
    assert re.search(rf"{key_id}.*revoked", run(env, "keys", "list").stdout)
    again = run(env, "keys", "revoke", key_id)
    assert again.returncode == 1 and "No active key" in again.stderr


def test_bad_settings_are_reported_without_a_traceback(env):
    env["CONNECTOR_POLL_INTERVAL"] = "soon"
    result = run(env, "keys", "list")
    assert result.returncode == 1
    assert "CONNECTOR_POLL_INTERVAL must be a whole number" in result.stderr and "Traceback" not in result.stderr


def test_serve_demo_prints_a_key_that_works(env):
    """The README's first command, then the curl it shows next."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "serve", "--demo", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        key = None
        deadline = time.monotonic() + 30
        while key is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            match = re.search(r"export KEY=(\S+)", line)
            key = match.group(1) if match else None
        assert key, "serve --demo printed no key"
        for _ in range(100):
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/api/v1/get-tiktok-user-followers",
                               headers={"Authorization": f"Bearer {key}"},
                               content='{"handle": "stoolpresidente", "count": 3}')
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert r.status_code == 200
        assert len(r.json()["followers"]) == 3
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["provider"] == "demo"
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert key not in output  # printed once, never in the access log or anywhere after


def test_serve_demo_with_existing_keys_says_how_to_get_one(env):
    run(env, "keys", "create", "--name", "first")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "serve", "--demo", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert "Caller keys exist already" in "".join(lines)
    assert "export KEY=" not in "".join(lines)


def test_the_cli_names_its_own_options_where_http_names_headers(env):
    done = run(env, "followers", "stoolpresidente", "--provider", "nope")
    assert done.returncode == 1
    assert "Unknown provider 'nope' in --provider. Use one of:" in done.stderr
    assert "X-Provider" not in done.stderr and "[provider option]" not in done.stderr
    env = dict(env, CONNECTOR_PROVIDER_KEY="k")
    done = run(env, "followers", "stoolpresidente")
    assert "--provider-key was sent without --provider" in done.stderr
