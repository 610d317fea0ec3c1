"""Setting up a deployment as a newcomer does: real `connector` processes.

Setup mistakes (PostgreSQL without its driver, a ``postgres://`` URL, a database that cannot be
reached) are one sentence that says what to do, never a traceback or the password, for every
command that opens the database; ``connector check`` knows the demo and exits 0 when what is
configured works; ``connector serve`` says when no worker is running; the exports' folders and
the Node version the Zapier CLI needs.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import CLI, clean_env, free_port, run, wait_up

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-secret-pw"
SECRET_KEY = "setup-test-secret-key-0123456789abcdef"   # hooks need one (their signing secrets are encrypted)
# The connector as it runs where psycopg is not installed: the import fails as it would.
WITHOUT_PSYCOPG = [sys.executable, "-c",
                   "import sys; sys.modules['psycopg'] = None; from connector.cli import main; main()"]
# Every command that opens the database.
COMMANDS = (("db", "status"), ("db", "upgrade"), ("check", "--no-providers"), ("poll", "--once"),
            ("keys", "list"), ("serve", "--port", "{port}"), ("serve", "--demo", "--port", "{port}"))


def _args(command):
    port = str(free_port())
    return [part.replace("{port}", port) for part in command]


def _one_sentence_no_traceback(result: subprocess.CompletedProcess, *fragments: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and PASSWORD not in output, output
    for fragment in fragments:
        assert fragment in output, output
    return output


@pytest.fixture
def env(tmp_path):
    return clean_env(f"sqlite:///{tmp_path / 'setup.db'}")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_postgresql_without_psycopg_names_the_extra_to_install(env, command):
    env["CONNECTOR_DATABASE_URL"] = f"postgresql+psycopg://connector:{PASSWORD}@127.0.0.1:{free_port()}/connector"
    result = subprocess.run([*WITHOUT_PSYCOPG, *_args(command)], env=env, capture_output=True, text=True,
                            timeout=60)
    _one_sentence_no_traceback(result, "PostgreSQL needs the psycopg driver, which is not installed: run "
                                       "pip install -e '.[postgres]'")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_postgres_url_says_to_write_postgresql_psycopg(env, command):
    env["CONNECTOR_DATABASE_URL"] = f"postgres://connector:{PASSWORD}@db.example.com:5432/connector"
    _one_sentence_no_traceback(run(env, *_args(command)), "CONNECTOR_DATABASE_URL starts with postgres://",
                               "write postgresql+psycopg:// instead")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unreachable_database_names_its_host_and_port_never_the_password(env, command):
    port = free_port()   # nothing listens there
    env["CONNECTOR_DATABASE_URL"] = f"postgresql+psycopg://connector:{PASSWORD}@127.0.0.1:{port}/connector"
    output = _one_sentence_no_traceback(
        run(env, *_args(command)),
        f"Cannot reach the PostgreSQL database at 127.0.0.1:{port} (connection refused): check "
        "CONNECTOR_DATABASE_URL and that the database server is running.")
    assert len([line for line in output.splitlines() if "Cannot reach" in line]) == 1


def test_a_sqlite_file_that_cannot_be_made_says_so(env, tmp_path):
    env["CONNECTOR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'no-such-folder' / 'c.db'}"
    _one_sentence_no_traceback(run(env, "db", "status"), "Cannot reach the SQLite database",
                               "(the file cannot be opened)", "its folder exists and is writable")


# -- connector check ---------------------------------------------------------------------------

def test_check_demo_uses_what_serve_demo_uses_and_exits_0(env):
    env["DUMPLING_BASE_URL"] = "https://dumpling.example"   # a setting the demo does not read
    result = run(env, "check", "--demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo (default): answers" in result.stdout and result.stdout.rstrip().endswith("All good.")
    assert re.search(r"CONNECTOR_PROVIDER\s+demo\n", result.stdout)
    assert re.search(r"CONNECTOR_POLL_INTERVAL\s+30\b", result.stdout)            # as serve --demo polls
    assert re.search(r"CONNECTOR_ALLOW_PRIVATE_TARGETS\s+on", result.stdout)
    assert "DUMPLING_" not in result.stdout and "TIKTOK_" not in result.stdout and "SOCIALFETCH_" not in result.stdout


def test_check_has_the_option_its_own_message_suggests(env):
    unset = run(env, "check", "--no-providers")
    assert unset.returncode == 1
    suggested = re.search(r"with (--provider demo)", unset.stdout).group(1).split()
    again = run(env, "check", *suggested)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "demo (default): answers" in again.stdout


def test_check_a_provider_without_credentials_says_what_to_set(env):
    result = run(env, "check", "--provider", "dumpling")
    assert result.returncode == 1 and "dumpling: no credentials; set DUMPLING_API_KEY." in result.stdout


def test_check_finds_a_running_serve_demo_and_checks_what_it_uses(env, tmp_path):
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--demo", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_up(f"http://127.0.0.1:{port}/healthz", proc)
        result = run(env, "check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"`connector serve --demo` is running (port {port}, pid {proc.pid})" in result.stdout
        assert "demo (default): answers" in result.stdout and "All good." in result.stdout
        # On another database it is not what is configured there.
        other = run(dict(env, CONNECTOR_DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}"), "check", "--no-providers")
        assert other.returncode == 1 and "is running" not in other.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    # Stopped, it is no longer found: nothing is configured, which check says (exit 1).
    after = run(env, "check", "--no-providers")
    assert after.returncode == 1 and "is running" not in after.stdout and "none configured" in after.stdout


# -- connector serve says whether a worker runs ------------------------------------------------

def _banner(env, port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("worker" in line for line in lines):
        lines.append(proc.stdout.readline())
    return proc, "".join(lines)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def test_serve_says_when_no_worker_is_running_and_what_to_start(env):
    env.update(CONNECTOR_PROVIDER="demo", CONNECTOR_ALLOW_PRIVATE_TARGETS="1", CONNECTOR_SECRET_KEY=SECRET_KEY)
    port = free_port()
    proc, banner = _banner(env, port)
    try:
        assert "No worker is running" in banner and "no poll has committed ever" in banner
        assert "hooks will not fire. Start the worker in another terminal: connector poll" in banner
        # A hook is made; a worker pass polls its watch; the next start says a worker is polling.
        wait_up(f"http://127.0.0.1:{port}/healthz", proc)
        key = run(env, "keys", "create", "--name", "t").stdout.strip().splitlines()[-1]
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/hooks", headers={"Authorization": f"Bearer {key}"},
                       json={"event": "new_follower", "handle": "stoolpresidente",
                             "targetUrl": "http://127.0.0.1:9/"})
        assert r.status_code == 201, r.text
    finally:
        _stop(proc)
    assert run(env, "poll", "--once").returncode == 0
    proc, banner = _banner(env, free_port())
    try:
        assert re.search(r"A worker is polling this database \(a poll committed \d+ s ago\)", banner), banner
        assert "No worker is running" not in banner
    finally:
        _stop(proc)


# -- exports -----------------------------------------------------------------------------------

def test_the_zapier_package_requires_the_node_the_zapier_cli_needs(env, tmp_path):
    assert run(env, "export", "zapier", "--out", str(tmp_path / "z")).returncode == 0
    engines = json.loads((tmp_path / "z" / "package.json").read_text())["engines"]
    assert engines == {"node": ">=22"}
    cli = json.loads((ROOT / "tests" / "zapier_cli" / "package.json").read_text())
    assert any(name.startswith("node") and "22" in version
               for name, version in {**cli.get("dependencies", {}), **cli.get("devDependencies", {})}.items())


def test_exported_app_folders_are_ignored_by_git():
    for path in ("zapier-app/package.json", "make-app/makecomapp.json"):
        done = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert done.returncode == 0, f"{path} is not ignored by git"


def test_the_console_of_a_server_without_worker_says_to_start_one(env):
    admin = "operator-secret-0123456789"
    env.update(CONNECTOR_PROVIDER="demo", CONNECTOR_ALLOW_PRIVATE_TARGETS="1", CONNECTOR_ADMIN_KEY=admin,
               CONNECTOR_SECRET_KEY=SECRET_KEY,
               CONNECTOR_POLL_POLICY="fixed", CONNECTOR_POLL_INTERVAL="1", CONNECTOR_POLL_LEASE_SECONDS="1")
    key = run(env, "keys", "create", "--name", "t").stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/healthz", proc)
        r = httpx.post(f"{base}/api/v1/hooks", headers={"Authorization": f"Bearer {key}"},
                       json={"event": "new_follower", "handle": "stoolpresidente", "targetUrl": "http://127.0.0.1:9/"})
        assert r.status_code == 201, r.text
        time.sleep(3)                       # due after 1 s; no worker polls it; the lease is 1 s
        with httpx.Client(base_url=base, timeout=30) as browser:
            form = browser.get("/console/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            assert browser.post("/console/login", data={"csrf_token": token, "admin_key": admin}).status_code == 303
            page = browser.get("/console/").text
        assert 'id="worker-stalled"' in page and "No worker is polling" in page, page[:2000]
        assert "Start the worker beside the web service: <code>connector poll</code>" in page
    finally:
        _stop(proc)


GUNICORN = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", "127.0.0.1:{port}", "connector.app:create_app()"]


def _gunicorn(env: dict) -> subprocess.CompletedProcess:
    """The Procfile's web process (gunicorn on ``create_app()``), until it gives up."""
    args = [part.replace("{port}", str(free_port())) for part in GUNICORN]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


def _hook_row(url: str) -> None:
    """A database the release has made, holding one webhook subscription."""
    import sqlalchemy as sa
    assert run(clean_env(url), "db", "upgrade").returncode == 0
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO watches (id, provider, cred_hash, handle, status, credits_spent, pages_read, next_poll_at, "
                             "created_at) VALUES ('w_1', 'demo', '', 'brand', 'active', 0, 0, 0, 0)"))
        conn.execute(sa.text("INSERT INTO subscriptions (id, watch_id, key_id, kind, event, request_source, status, "
                             "credits_spent, created_at) VALUES ('hook_1', 'w_1', 'key_1', 'hook', 'new_follower', "
                             "'API', 'active', 0, 0)"))
    engine.dispose()


@pytest.mark.parametrize("mistake", ["a setting", "hooks without CONNECTOR_SECRET_KEY", "an unreachable database"])
def test_the_procfile_web_process_says_a_setup_mistake_in_one_line(tmp_path, mistake):
    url = f"sqlite:///{tmp_path / 'connector.db'}"
    if mistake == "a setting":
        env, expected = clean_env(url, CONNECTOR_POLL_INTERVAL="five"), "CONNECTOR_POLL_INTERVAL"
    elif mistake == "an unreachable database":
        url = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:{free_port()}/connector"
        env, expected = clean_env(url), "Cannot reach"
    else:
        _hook_row(url)
        env, expected = clean_env(url), "set CONNECTOR_SECRET_KEY"
    done = _gunicorn(env)
    assert done.returncode != 0
    assert "Worker failed to boot" in done.stderr                 # gunicorn stops instead of forking again
    ours = [line for line in done.stderr.splitlines() if line.startswith("connector: ")]
    assert len(ours) == 1 and expected in ours[0], done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr
