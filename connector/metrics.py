"""Prometheus metrics: what the web service and the worker count (the ``/metrics`` answer is
:mod:`connector.metrics_server`'s).

Counters and histograms are prometheus_client's, counted where things happen through the
small functions below (one call at each site: requests in ``app.py``, upstream calls in
``providers/base.py``, polls in ``trigger/worker.py`` and ``trigger/poll.py``, deliveries
in ``trigger/sender.py`` and ``trigger/deliver.py``). Children are looked up once per label
set and kept, so a counted request costs a dict lookup and an increment.

Several processes add up through prometheus_client's multiprocess mode: every process whose
environment has ``PROMETHEUS_MULTIPROC_DIR`` writes its counts to files there, and
``/metrics`` sums the folder. ``connector serve`` makes a folder per port under the
instance folder (wiped at start) and marks exited gunicorn workers dead, so gunicorn's
workers and the demo's poller show as one service. A worker on another machine serves
its own: ``connector poll --metrics-port``. Without the variable a process serves its own
counts.

This module imports nothing of the service but its errors, so a provider can count its
calls without loading the HTTP edge or the database.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, multiprocess, values

from .config import ConfigError
from .errors import ConnectorError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"})

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)


class _Metrics:
    """The metric objects, built anew when the process turns multiprocess mode on."""

    def __init__(self):
        reg = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("connector_http_requests", "HTTP requests answered, by route (its URL rule), "
                                "method, status and requestSource", ["route", "method", "status", "request_source"],
                                registry=reg)
        self.upstream = Histogram("connector_upstream_call_seconds", "Calls to a data provider (retries "
                                  "included) and their duration, by provider, operation and outcome (ok or the "
                                  "error kind)", ["provider", "operation", "outcome"], buckets=LATENCY_BUCKETS,
                                  registry=reg)
        self.polls = Counter("connector_polls", "Polls of a watch, by where they ran (worker or request), "
                             "outcome (ok, the error kind, crashed) and the trigger whose read it is (new_follower "
                             "for a watch of followers, ...)", ["where", "outcome", "event"], registry=reg)
        self.pages = Counter("connector_poll_pages", "Upstream pages read by polls, by the trigger whose read it is",
                             ["where", "event"], registry=reg)
        self.new_events = Counter("connector_new_events", "New events detected by polls, by event",
                                  ["where", "event"], registry=reg)
        self.deliveries = Counter("connector_deliveries", "Webhook delivery attempts by outcome (delivered, "
                                  "retry, failed, gone, disabled, skipped, error)", ["outcome"], registry=reg)
        self.lag = Histogram("connector_delivery_lag_seconds", "From an event's commit (its detection) to "
                             "the receiver's 2xx", [], buckets=LAG_BUCKETS, registry=reg)
        self.credits = Counter("connector_credits_spent", "Caller credits spent, by action or trigger",
                               ["what"], registry=reg)
        self.children: dict = {}

    def child(self, metric, *labels):
        """``metric.labels(*labels)``, looked up once (``labels()`` takes a lock)."""
        key = (id(metric), labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found


def _usable(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


disable_created_metrics()   # the *_created series double every family and nothing here reads them
if os.environ.get(MULTIPROC_ENV) and not _usable(os.environ[MULTIPROC_ENV]):
    values.ValueClass = values.MutexValue    # importing must not fail: check_multiprocess_dir says why
_m = _Metrics()


# -- process set-up ---------------------------------------------------------------------------

def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def check_multiprocess_dir() -> None:
    """A ``PROMETHEUS_MULTIPROC_DIR`` that cannot be written would fail the first count: say so now."""
    path = multiprocess_dir()
    if path is not None and not _usable(path):
        raise ConfigError(f"{MULTIPROC_ENV} must be a folder this process can write (the processes of one "
                          f"service add their metrics up there), got {path!r}; create it or unset it.")


def use_multiprocess_dir(path: Path, *, wipe: bool = True) -> None:
    """Count into files in ``path`` from now on (and in child processes, which inherit the
    variable). ``wipe`` empties it first: counts of a previous run must not add up."""
    if wipe and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    global _m
    values.ValueClass = values.MultiProcessValue()
    _m = _Metrics()


def mark_dead(pid: int) -> None:
    """A gunicorn worker exited (gunicorn's ``child_exit`` hook)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


# -- counting ---------------------------------------------------------------------------------

def request_done(route: str, method: str, status: int, source: str) -> None:
    _m.child(_m.requests, route, method if method in METHODS else "other", str(status), source).inc()


def credits_spent(what: str, amount: int) -> None:
    if amount > 0:
        _m.child(_m.credits, what).inc(amount)


def timed_upstream(provider: str, operation: str, call):
    """``call`` counted and timed as one upstream call of ``provider`` (the outcome: ok or
    the :class:`~connector.errors.UpstreamError` kind)."""
    def counted(*args, **kwargs):
        started, outcome = time.perf_counter(), "ok"
        try:
            return call(*args, **kwargs)
        except ConnectorError as exc:
            outcome = getattr(exc, "kind", "refused")
            raise
        except BaseException:
            outcome = "crashed"
            raise
        finally:
            _m.child(_m.upstream, provider, operation, outcome).observe(time.perf_counter() - started)
    return counted


def poll_done(result, where: str) -> None:
    """One poll's result (None: the poll crashed)."""
    if result is None:
        _m.child(_m.polls, where, "crashed", "unknown").inc()
        return
    error = getattr(result, "error", None)
    event = result.event or "unknown"
    _m.child(_m.polls, where, "ok" if error is None else error.kind, event).inc()
    if result.pages:
        _m.child(_m.pages, where, event).inc(result.pages)
    for name, count in result.events_by.items():
        _m.child(_m.new_events, where, name).inc(count)
    credits_spent(event, sum(result.charged.values()))


def delivery_done(outcome: str) -> None:
    _m.child(_m.deliveries, outcome).inc()


def delivered(lag_seconds: float) -> None:
    """A delivery answered 2xx ``lag_seconds`` after its event was committed."""
    _m.lag.observe(max(0.0, lag_seconds))


def own_registry() -> CollectorRegistry:
    """This process's counts (what a scrape reads when there is no multiprocess folder)."""
    return _m.registry
