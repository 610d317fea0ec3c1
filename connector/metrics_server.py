"""The ``/metrics`` answer: the counts of :mod:`connector.metrics`, every process's or this
one's, plus the database's state read at scrape time, and who may read them.

State is read at scrape time, not counted: the pending deliveries come from one indexed
query (``ix_deliveries_due``) per scrape.

``/metrics`` answers with ``Authorization: Bearer <CONNECTOR_METRICS_TOKEN>`` when that is
set; without it only to clients on loopback that came through no proxy. The web service serves
it as a route (``app.py``); ``connector poll --metrics-port`` on a server of its own
(:func:`serve_in_thread`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from .api.errors import answer
from .errors import ConnectorError, Forbidden, Unauthorized
from .metrics import multiprocess_dir, own_registry
from .trigger.tables import deliveries as d

TOKEN_ENV = "CONNECTOR_METRICS_TOKEN"


class PendingDeliveries:
    """Scrape-time state from the database: deliveries waiting, and those due now."""

    def __init__(self, store, clock=time.time):
        self.store, self.clock = store, clock

    def collect(self):
        up = GaugeMetricFamily("connector_database_up", "1 when the scrape could read the database")
        try:
            with self.store.connect() as conn:
                pending, due = conn.execute(
                    sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(
                        sa.case((d.c.next_attempt_at <= self.clock(), 1), else_=0)), 0))
                    .where(d.c.status == "pending")).one()
        except sa.exc.SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("connector_deliveries_pending", "Webhook deliveries not yet delivered or "
                                "given up (retries included)", value=pending)
        yield GaugeMetricFamily("connector_deliveries_due", "Pending deliveries whose attempt is due now",
                                value=due)


class _Own:
    """This process's counts (no multiprocess folder)."""

    def collect(self):
        return own_registry().collect()


class PollSchedule:
    """Scrape-time state of the watches' schedules (``trigger/schedule_stats.py``)."""

    def __init__(self, store, settings, clock=time.time):
        self.store, self.settings, self.clock = store, settings, clock

    def collect(self):
        from .trigger.schedule_stats import fleet_schedule

        try:
            with self.store.connect() as conn:
                fleet = fleet_schedule(conn, self.settings, now=self.clock())
        except sa.exc.SQLAlchemyError:
            return
        polls = GaugeMetricFamily("connector_watch_polls_per_day", "Polls a day of the watches being polled, "
                                  "at the intervals chosen now (policy=current) and at a fixed "
                                  "CONNECTOR_POLL_INTERVAL (policy=fixed)", labels=["policy"])
        polls.add_metric(["current"], fleet["polls_per_day"])
        polls.add_metric(["fixed"], fleet["fixed_polls_per_day"])
        yield polls
        yield GaugeMetricFamily("connector_watches_polled", "Watches being polled (a subscription pays for them)",
                                value=fleet["watches"])
        yield GaugeMetricFamily("connector_watch_followers_per_day", "Estimated new followers a day over the "
                                "watches being polled (the schedules' estimate)", value=fleet["followers_per_day"])


def scrape(store=None, clock=time.time, settings=None) -> bytes:
    """The text format: every process's counts (or this one's), plus the database's state
    (the schedules' too, given the ``settings``)."""
    registry = CollectorRegistry()
    if multiprocess_dir() is not None:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Own())
    if store is not None:
        registry.register(PendingDeliveries(store, clock))
        if settings is not None:
            registry.register(PollSchedule(store, settings, clock))
    return generate_latest(registry)


def check_access(token: str | None, authorization: str | None, remote_addr: str | None, proxied: bool) -> None:
    """Whether a scrape may read the metrics: :class:`Unauthorized` or :class:`Forbidden` otherwise."""
    if token:
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthorized(f"Metrics need 'Authorization: Bearer <token>' with the {TOKEN_ENV} of this service.")
        return
    try:
        local = ipaddress.ip_address((remote_addr or "").split("%", 1)[0]).is_loopback
    except ValueError:
        local = False
    if not local or proxied:
        raise Forbidden(f"Metrics are served only to this machine (loopback, no proxy) while {TOKEN_ENV} is unset; "
                        f"set {TOKEN_ENV} and scrape with 'Authorization: Bearer <token>'.")


def proxied(headers) -> bool:
    """Whether a request came through a proxy (which makes every client look local)."""
    return bool(headers.get("X-Forwarded-For") or headers.get("Forwarded") or headers.get("X-Real-IP"))


def serve_in_thread(host: str, port: int, token: str | None, store=None, settings=None):
    """``/metrics`` of this process on ``host:port`` (``connector poll --metrics-port``), on a
    daemon thread; returns the server (``shutdown()`` stops it). OSError when the port is taken."""
    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):   # no line per scrape
            pass

    class Headers:
        def __init__(self, environ):
            self.environ = environ

        def get(self, name):
            return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def app(environ, start_response):
        def error(status: int, message: str):
            start_response(f"{status} Error", [("Content-Type", "application/json")])
            return [json.dumps({"error": message}).encode()]
        if environ.get("PATH_INFO") != "/metrics":
            return error(404, "Only /metrics is served on this port.")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return error(405, "Use GET /metrics.")
        try:
            check_access(token, environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR"),
                         proxied(Headers(environ)))
        except ConnectorError as exc:
            body, status, _ = answer(exc)
            return error(status, body["error"])
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [scrape(store, settings=settings)]

    server = make_server(host, port, app, server_class=WSGIServer, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="metrics",
                     daemon=True).start()
    return server


CONTENT_TYPE = CONTENT_TYPE_LATEST
