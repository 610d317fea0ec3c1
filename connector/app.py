"""``create_app()`` builds the web service: the shared services (:mod:`.services`), routes and
the error handlers that turn errors into HTTP answers.

gunicorn serves ``connector.app:create_app()``; tests call ``create_app(settings)``.
Start-up fails fast, with a message naming the file and field, when a manifest is invalid.
Configured from the environment (the Procfile's gunicorn), a setup mistake is that one
sentence on stderr and exit code 3, which gunicorn reads as "Worker failed to boot" and
stops on, never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics, metrics_server
from .api import actions, errors, hooks, meta, triggers
from .api.common import REQUEST_SOURCES, IdConverter, JSONProvider, unexpected
from .api.inflight import InFlight
from .config import ConfigError, Settings
from .console import bp as console_bp
from .errors import ConnectorError, install_log_filter
from .manifests import ManifestError
from .services import build_services, instance_path
from .store.migrate import SchemaError
from .trigger.hook_secrets import check_at_start

log = logging.getLogger("connector")


def _http_error_message(exc: HTTPException, limit: int) -> str:
    if exc.code == 404:
        return f"No route {request.method} {request.path[:100]}. The routes are listed at /openapi.json."
    if exc.code == 405:
        allowed = ", ".join(sorted(set(exc.valid_methods or []) - {"HEAD", "OPTIONS"})) or "another method"
        return f"Method {request.method} is not allowed on {request.path[:100]}; use {allowed}."
    if exc.code == 413:
        return f"Request body is too large: the limit is {limit // 1024} KB."
    return exc.description or exc.name


def _request_source() -> str:
    """The request's requestSource for the metrics, from the known set or "other"; the body is
    looked at only when the route read it (and names the field)."""
    data = getattr(request, "_cached_data", None)   # werkzeug's cache of get_data(cache=True)
    if data and b'"requestSource"' in data:
        try:
            source = json.loads(data).get("requestSource")
        except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
            source = None
        if source is not None:
            return source if source in REQUEST_SOURCES else "other"
    source = request.headers.get("X-Request-Source")
    if source is None:
        return "API"
    return source if source in REQUEST_SOURCES else "other"


BOOT_ERROR = 3    # gunicorn's WORKER_BOOT_ERROR: the arbiter stops instead of forking again


def create_app(test_config: Settings | dict | None = None) -> Flask:
    if test_config is not None:
        return _create_app(test_config)
    try:
        return _create_app(None)
    except (ConfigError, ManifestError, SchemaError) as exc:
        print(f"connector: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(BOOT_ERROR) from None


def _create_app(test_config: Settings | dict | None) -> Flask:
    app = Flask(__name__, instance_path=str(instance_path()), instance_relative_config=True)
    if isinstance(test_config, Settings):
        settings = test_config
    elif test_config and "settings" in test_config:
        settings = test_config["settings"]
    else:
        settings = Settings.from_env()
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.json = JSONProvider(app)   # orjson underneath: the same documents, faster
    app.url_map.converters["default"] = IdConverter   # ids in URLs; set before any route is added
    if isinstance(test_config, dict):
        app.config.update({k: v for k, v in test_config.items() if k != "settings"})

    if settings.trusted_proxies:
        # Behind nginx (deploy/): the client's own address and scheme (the access log, the
        # console's Secure cookie, anything keyed by address) from the last N proxies'
        # X-Forwarded-For/-Proto. Only when configured: otherwise any client could claim any.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    install_log_filter()
    metrics.check_multiprocess_dir()
    svc = build_services(settings)
    try:
        check_at_start(svc.store, settings.secret_key)   # hooks need CONNECTOR_SECRET_KEY (ConfigError)
    except BaseException:
        svc.close()
        raise
    app.extensions["connector"] = svc
    inflight = app.extensions["connector.inflight"] = InFlight(settings.max_requests_in_flight_per_key)

    @app.teardown_request
    def leave_inflight(_exc):
        key_id = g.pop("inflight_key", None)
        if key_id is not None:
            inflight.leave(key_id)

    actions.register(app, svc.manifests)
    app.register_blueprint(meta.bp)
    hooks.register(app, svc.manifests)
    triggers.register(app, svc.manifests)
    app.register_blueprint(console_bp)

    @app.after_request
    def rate_headers(response):
        state = g.get("rate")
        if state is not None:
            response.headers["X-RateLimit-Limit"] = str(state.limit)
            response.headers["X-RateLimit-Remaining"] = str(state.remaining)
        return response

    action_costs = {f"actions.{m.key}": (m.key, m.cost) for m in svc.manifests.values() if m.kind == "action"}

    @app.after_request
    def count_request(response):
        rule = request.url_rule
        metrics.request_done(rule.rule if rule is not None else "(unmatched)", request.method,
                             response.status_code, _request_source())
        if response.status_code == 200 and request.endpoint in action_costs:
            metrics.credits_spent(*action_costs[request.endpoint])
        return response

    @app.get("/metrics")
    def metrics_view():
        """Prometheus' text format; see :mod:`connector.metrics_server` for who may read it."""
        metrics_server.check_access(settings.metrics_token, request.headers.get("Authorization"),
                                    request.remote_addr, metrics_server.proxied(request.headers))
        return Response(metrics_server.scrape(svc.store, svc.clock, svc.settings), content_type=metrics_server.CONTENT_TYPE)

    @app.errorhandler(ConnectorError)
    def connector_error(exc: ConnectorError):
        body, status, headers = errors.answer(exc)
        response = jsonify(body)
        response.status_code = status
        response.headers.update(headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = jsonify({"error": _http_error_message(exc, settings.max_body_bytes)})
        response.status_code = exc.code or 500
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unhandled(exc: Exception):
        return connector_error(unexpected(None, exc))

    return app
