"""Shared fixtures: real databases, the app served over real HTTP on loopback.

- ``database_url``: a fresh SQLite file, and (parametrised) a fresh PostgreSQL schema when
  ``CONNECTOR_TEST_DATABASE_URL`` is set; PostgreSQL cases skip without it.
- ``make_settings(**overrides)``: ``Settings`` on that database.
- ``serve(app_or_settings)``: runs the app on 127.0.0.1 in a thread; returns a ``LiveServer``.
- ``demo``: the service on the demo provider with an unlimited key.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from connector.app import create_app
from connector.config import Settings

PG_URL = os.environ.get("CONNECTOR_TEST_DATABASE_URL")
TEST_SECRET_KEY = "test-secret-key-for-webhooks-and-credentials"   # CONNECTOR_SECRET_KEY of test services


def _pg_schema_url(base: str) -> tuple[str, str]:
    """A URL whose connections use a fresh schema, so tests never see each other's rows."""
    schema = "t_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def _drop_pg_schema(base: str, schema: str) -> None:
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Every test using this runs on SQLite and, where configured, on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'connector.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests need CONNECTOR_TEST_DATABASE_URL")
    url, schema = _pg_schema_url(PG_URL)
    yield url
    _drop_pg_schema(PG_URL, schema)


@pytest.fixture
def sqlite_url(tmp_path):
    """SQLite only, for tests whose subject is not the database."""
    return f"sqlite:///{tmp_path / 'connector.db'}"


@pytest.fixture
def make_settings(sqlite_url):
    def factory(**overrides) -> Settings:
        base = {"database_url": sqlite_url, "provider": "demo", "secret_key": TEST_SECRET_KEY}
        base.update(overrides)
        return Settings(**base)
    return factory


@dataclass
class LiveServer:
    app: object
    url: str
    server: object
    thread: threading.Thread

    @property
    def services(self):
        return self.app.extensions["connector"]

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)
        self.services.providers.close()
        self.services.store.dispose()


@pytest.fixture
def serve():
    servers: list[LiveServer] = []

    def start(app_or_settings) -> LiveServer:
        app = app_or_settings if hasattr(app_or_settings, "wsgi_app") else create_app(app_or_settings)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        live = LiveServer(app=app, url=f"http://127.0.0.1:{server.server_port}", server=server, thread=thread)
        servers.append(live)
        return live

    yield start
    for live in servers:
        live.stop()


@dataclass
class Service:
    live: LiveServer
    key: str
    http: httpx.Client

    @property
    def url(self):
        return self.live.url

    @property
    def services(self):
        return self.live.services

    def post(self, path: str, body=None, **kwargs) -> httpx.Response:
        return self.http.post(path, json=body, **kwargs)


@pytest.fixture
def demo(serve, make_settings):
    """The service on the demo provider, with one unlimited caller key."""
    live = serve(make_settings())
    raw, _ = live.services.keys.create(name="tests")
    with live.client(raw) as http:
        yield Service(live=live, key=raw, http=http)
