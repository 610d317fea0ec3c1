"""Schema migrations: built from migrations, the schema is the code's; a database made by the
previous release (before migrations) is refused until ``connector db upgrade``, then carried
over with its keys, hooks, polling subscriptions and events."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata

from connector.store import Store, migrate
from connector.store.keys import hash_key
from connector.store.schema import metadata
from connector.trigger.events import dumps, event_payload
from tests.conftest import PG_URL, _drop_pg_schema, _pg_schema_url
from tests.trigger_kit import HANDLE, dumpling, receiver, trigger_settings, world  # noqa: F401

DATA = Path(__file__).parent / "data"
RAW_KEY = "tc_previous_release_key_0123456789"


def previous_release_schema(url: str) -> None:
    """The tables the previous release's ``create_all`` made, from its own DDL."""
    engine = sa.create_engine(url)
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    with engine.begin() as conn:
        for statement in (DATA / f"schema_0_1_{dialect}.sql").read_text().split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    engine.dispose()


def shape(url: str) -> dict:
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    out = {}
    for table in sorted(set(inspector.get_table_names()) - {migrate.VERSION_TABLE}):
        out[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in inspector.get_indexes(table)),
            "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"])
                                   for f in inspector.get_foreign_keys(table)),
        }
    engine.dispose()
    return out


@pytest.fixture
def second_url(database_url, tmp_path):
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    url, schema = _pg_schema_url(PG_URL)
    yield url
    _drop_pg_schema(PG_URL, schema)


def test_the_migrations_build_the_schema_the_code_uses(database_url):
    store = Store(database_url)
    with store.engine.connect() as conn:
        assert compare_metadata(migrate._context(conn), metadata) == []
        if store.dialect == "sqlite":   # the CHECK that keeps credits from going negative survived
            ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'api_keys'").scalar_one()
            assert "credits_not_negative" in ddl
    assert migrate.state(store.engine) == "current"
    store.dispose()


def test_the_baseline_is_the_previous_release_schema(database_url, second_url):
    previous_release_schema(database_url)
    engine = sa.create_engine(second_url)
    with engine.begin() as conn:
        command.upgrade(migrate._config(conn), migrate.BASELINE)
    engine.dispose()
    assert shape(second_url) == shape(database_url)


def test_processes_starting_at_once_on_an_empty_database_create_it_once(database_url):
    """The Procfile starts two web workers and a poller together, often on a new database."""
    script = "import sys; from connector.store import Store; Store(sys.argv[1]).dispose(); print('ok')"
    starts = [subprocess.Popen([sys.executable, "-c", script, database_url], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(120), *p.communicate()) for p in starts]
    assert [(code, out.strip()) for code, out, _ in results] == [(0, "ok")] * 4, [err for *_, err in results]
    engine = sa.create_engine(database_url)
    assert migrate.state(engine) == "current"
    engine.dispose()


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'half.db'}"
    previous_release_schema(url)
    real = command.upgrade

    def fail_after_0002(config, target):
        real(config, "0002")
        raise RuntimeError("disk full")
    monkeypatch.setattr(command, "upgrade", fail_after_0002)
    engine = sa.create_engine(url)
    with pytest.raises(migrate.SchemaError, match="Upgrading the database schema failed, and nothing was changed"):
        migrate.upgrade(engine)
    assert migrate.state(engine) == "legacy"                             # no half-made 0002
    assert "inbox" not in sa.inspect(engine).get_table_names()
    monkeypatch.undo()
    assert migrate.upgrade(engine) == ("legacy", migrate.head())
    engine.dispose()


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "DUMPLING_"))}
    env.update(CONNECTOR_DATABASE_URL=url, CONNECTOR_PROVIDER="dumpling", DUMPLING_API_KEY="unused",
               CONNECTOR_LOG_LEVEL="WARNING")
    return subprocess.run([sys.executable, "-m", "connector.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def previous_id(prefix: str, *parts: str) -> str:
    """An id as the previous release made it (watch ``w_``, event ``evt_``, polling
    subscription ``poll_``), written out here so that the code cannot change it unnoticed."""
    return prefix + hashlib.sha256(":".join(parts).encode()).hexdigest()[:24]


def fill_previous_release(url: str, target: str) -> dict:
    """Keys, a watch with seen followers and events, two identical hooks (the previous release
    allowed that), deliveries and attempts, and a polling subscription, as that release wrote them."""
    now = time.time()
    wid = previous_id("w_", "dumpling", "", HANDLE)
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        conn.execute(t["api_keys"].insert().values(id="key_prev", name="agency client", key_hash=hash_key(RAW_KEY),
                                                   key_prefix=RAW_KEY[:8], credits=50, rate_limit=None,
                                                   created_at=sa.func.now()))
        conn.execute(t["watches"].insert().values(
            id=wid, provider="dumpling", cred_hash="", handle=HANDLE, status="active", last_poll_at=now,
            next_poll_at=now + 86400, credits_spent=3, pages_read=3, created_at=now - 3600))
        ids = []
        for n in range(3):
            key = f"id:prev{n}"
            payload = event_payload(wid, key, {"user": {"id": f"prev{n}", "uniqueId": f"prev_{n}"}, "stats": {}},
                                    handle=HANDLE, provider="dumpling", detected_at=now - 60 + n)
            payload["id"] = previous_id("evt_", wid, key)
            ids.append(payload["id"])
            conn.execute(t["seen_followers"].insert().values(watch_id=wid, follower_key=key))
            conn.execute(t["events"].insert().values(id=payload["id"], watch_id=wid, follower_key=key,
                                                     payload=dumps(payload), detected_at=now - 60 + n, baseline=False))
        hook = {"watch_id": wid, "key_id": "key_prev", "kind": "hook", "event": "new_follower", "target_url": target,
                "secret": "whsec_" + "A" * 32, "request_source": "ZAPIER", "status": "active", "credits_spent": 1}
        conn.execute(t["subscriptions"].insert().values(id="hook_first", created_at=now - 3000, **hook))
        conn.execute(t["subscriptions"].insert().values(id="hook_copy", created_at=now - 2000, **hook))
        conn.execute(t["subscriptions"].insert().values(
            id=previous_id("poll_", wid, "key_prev"), watch_id=wid, key_id="key_prev", kind="poll",
            event="new_follower", request_source="MAKE_DOT_COM", status="active", credits_spent=1,
            created_at=now - 3600, last_called_at=now - 30))
        conn.execute(t["deliveries"].insert().values(subscription_id="hook_first", event_id=ids[0], status="delivered",
                                                     attempts=1, next_attempt_at=now, created_at=now - 50))
        conn.execute(t["deliveries"].insert().values(subscription_id="hook_first", event_id=ids[1], status="pending",
                                                     attempts=1, next_attempt_at=now + 600, created_at=now - 40))
        conn.execute(t["delivery_attempts"].insert().values(subscription_id="hook_first", event_id=ids[0],
                                                            attempted_at=now - 50, status_code=200, duration_ms=12))
    engine.dispose()
    return {"watch": wid, "events": ids}


def test_a_previous_release_database_is_refused_then_upgraded_with_its_data(database_url, serve, dumpling,  # noqa: F811
                                                                           receiver):  # noqa: F811
    previous_release_schema(database_url)
    before = fill_previous_release(database_url, receiver.url)

    with pytest.raises(migrate.SchemaError, match="connector db upgrade"):
        Store(database_url)
    for command_args in (("poll", "--once"), ("keys", "list")):
        refused = cli(database_url, *command_args)
        assert refused.returncode != 0 and "`connector db upgrade`" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    status = cli(database_url, "db", "status")
    assert status.returncode == 1 and status.stdout.startswith("legacy")

    upgraded = cli(database_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"Upgraded the database from legacy to revision {migrate.head()}" in upgraded.stdout
    again = cli(database_url, "db", "upgrade")
    assert again.returncode == 0 and "up to date" in again.stdout

    live = serve(trigger_settings(dumpling, database_url))
    assert live.services.keys.balance("key_prev") == 50
    with live.client(RAW_KEY) as http:
        hooks = http.get("/api/v1/hooks").json()["hooks"]
        assert sorted(h["id"] for h in hooks) == ["hook_copy", "hook_first"]
        first = http.get("/api/v1/hooks/hook_first").json()
        assert first["pendingDeliveries"] == 1 and len(first["recentDeliveries"]) == 1
        again = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE,
                                                 "targetUrl": receiver.url})
        assert again.status_code == 200 and again.json()["id"] == "hook_first"   # deduplicated from now on
        polled = http.post("/api/v1/triggers/new-follower", json={"handle": HANDLE}).json()["events"]
        assert [e["id"] for e in polled] == list(reversed(before["events"]))    # its inbox, filled in
    with live.services.store.connect() as conn:
        hosts = dict(conn.execute(sa.text("SELECT id, target_host FROM subscriptions WHERE kind = 'hook'")).all())
    port = receiver.url.split(":")[2].split("/")[0]
    assert hosts == {"hook_first": f"127.0.0.1:{port}", "hook_copy": f"127.0.0.1:{port}"}
    assert json.loads(json.dumps(polled))[0]["handle"] == HANDLE
