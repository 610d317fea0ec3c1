"""The HTTP harness every fake upstream is built on.

:class:`FakeServer` is a small WSGI application served by werkzeug's threaded development
server on ``127.0.0.1`` (port 0 = any free port) from a daemon thread::

    with FakeDumpling(world) as fake:          # start() ... stop()
        httpx.post(fake.url + "/api/v1/...")
        fake.requests[-1].json                 # what the client sent

A subclass declares ``routes`` as ``(path, endpoint, method)`` triples and implements
``on_<endpoint>(request, **url_args) -> Response`` plus two hooks that give failures the
provider's own look: ``error_response(status, endpoint)`` and ``bad_shape_body(endpoint)``.

Every request is recorded in ``.requests`` (a :class:`RecordedRequest`, header names lower
case) before it is answered; ``.reset_log()`` clears the log. ``.latency`` seconds are slept
before every answer (benchmarks use 0.1).

Failure injection, shared by all fakes: ``fail_next(n, kind=...)`` queues a failure for
each of the next ``n`` requests to a data endpoint (``endpoint=`` narrows it to one
endpoint, and is the only way to reach a control endpoint such as an OAuth token route):

``"status"``     answer ``status`` with ``body`` or the provider's own error body for it
``"malformed"``  200 with a truncated, non-JSON body (Content-Type still application/json)
``"bad_shape"``  200 with valid JSON that lacks the list / the profile
``"timeout"``    sleep ``seconds`` (choose more than the client's timeout), then answer normally
``"reset"``      drop the connection without any response: the socket is shut down with
                 SO_LINGER 0 (the client sees a reset or "server disconnected") and
                 werkzeug is told the connection was dropped, so nothing is logged

``headers`` (or ``retry_after=``) are added to status/malformed/bad_shape answers.

``credits`` (None: unlimited) is the balance of providers that sell credits; their fakes
call :meth:`FakeServer.spend` on success and answer their "out of credits" error when it
is refused.

werkzeug's server closes the connection after every answer and waits ~10 ms for stray
request bytes, so each request costs a fresh connection plus ~10 ms: fine for tests, and
small next to the ``latency`` benchmarks use.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .world import FakeWorld

FAILURE_KINDS = ("status", "malformed", "bad_shape", "timeout", "reset")
MALFORMED_BODY = '{"data": {"items": [{"handle": "trunc'


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower case
    json: Any = None  # parsed body when it was JSON
    form: dict[str, str] = field(default_factory=dict)  # parsed body when it was a form
    endpoint: str | None = None  # route name, None when no route matched
    status: int | None = None  # status answered; None if the connection was dropped
    injected: str | None = None  # kind of the injected failure, if any


@dataclass
class _Failure:
    kind: str
    status: int
    body: Any
    headers: dict[str, str]
    seconds: float
    endpoint: str | None


class _QuietRequestHandler(WSGIRequestHandler):
    """No access log on stderr: tests and benchmarks stay readable."""

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def parse_json_body(request: Request) -> tuple[bool, Any]:
    """``(True, value)`` when the body is JSON, whatever the Content-Type said."""
    try:
        return True, json.loads(request.get_data(cache=True) or b"null")
    except ValueError:
        return False, None


class FakeServer:
    """Base of the fakes: serving, request log, latency and failure injection."""

    routes: tuple[tuple[str, str, str], ...] = ()
    control_endpoints: frozenset[str] = frozenset()  # never hit by fail_next without endpoint=

    def __init__(
        self, world: FakeWorld, *, latency: float = 0.0, port: int = 0, credits: int | None = None
    ):
        self.world = world
        self.latency = latency
        self.port = port
        self.credits = credits
        self.requests: list[RecordedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._url_map = Map(
            [Rule(path, endpoint=endpoint, methods=[method]) for path, endpoint, method in self.routes]
        )

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._stopping.clear()
        self._server = make_server(
            "127.0.0.1", self.port, self, threaded=True, request_handler=_QuietRequestHandler
        )
        self.port = self._server.port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping for latency or an injected timeout
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- test controls ----------------------------------------------------------------------

    def reset_log(self) -> None:
        self.requests.clear()

    def fail_next(
        self,
        n: int = 1,
        *,
        kind: str = "status",
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
        retry_after: int | None = None,
        seconds: float = 5.0,
        endpoint: str | None = None,
    ) -> None:
        """Queue ``n`` failures; see the module docstring for the kinds."""
        if kind not in FAILURE_KINDS:
            raise ValueError(f"kind must be one of {FAILURE_KINDS}")
        headers = dict(headers or {})
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        with self._lock:
            for _ in range(n):
                self._failures.append(_Failure(kind, status, body, headers, seconds, endpoint))

    @property
    def pending_failures(self) -> int:
        return len(self._failures)

    def spend(self, cost: int = 1) -> bool:
        """Take ``cost`` credits; False (and nothing taken) when the balance is too low."""
        with self._lock:
            if self.credits is not None:
                if self.credits < cost:
                    return False
                self.credits -= cost
        return True

    def _take_failure(self, endpoint: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.endpoint == endpoint or (
                    failure.endpoint is None and endpoint not in self.control_endpoints
                ):
                    self._failures.remove(failure)
                    return failure
        return None

    # -- hooks for subclasses ---------------------------------------------------------------

    def error_response(
        self,
        status: int,
        endpoint: str | None,
        message: str | None = None,
        *,
        request: Request | None = None,
    ) -> Response:
        """The provider's own error answer for ``status`` (``request``: the one it answers)."""
        raise NotImplementedError

    def bad_shape_body(self, endpoint: str) -> Any:
        """A well-formed JSON body that lacks what a client needs (the list, the profile)."""
        raise NotImplementedError

    def finish(self, response: Response, endpoint: str | None) -> Response:
        """Last touch on every answer (e.g. rate-limit headers)."""
        return response

    # -- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        record = self._record(request)
        self._stopping.wait(self.latency)
        endpoint = None
        try:
            endpoint, args = self._url_map.bind_to_environ(environ).match()
        except (NotFound, RequestRedirect):
            response = self.error_response(404, None, f"No route for {request.method} {request.path}")
        except MethodNotAllowed:
            response = self.error_response(405, None, f"{request.method} is not allowed here")
        else:
            record.endpoint = endpoint
            failure = self._take_failure(endpoint)
            if failure is not None:
                record.injected = failure.kind
            response = self._answer(failure, request, environ, endpoint, args)
        response = self.finish(response, endpoint)
        record.status = response.status_code
        return response(environ, start_response)

    def _answer(
        self, failure: _Failure | None, request: Request, environ: dict, endpoint: str, args: dict
    ) -> Response:
        if failure is None or failure.kind == "timeout":
            if failure is not None:
                self._stopping.wait(failure.seconds)
            return getattr(self, f"on_{endpoint}")(request, **args)
        if failure.kind == "reset":
            _drop_connection(environ)
        if failure.kind == "status":
            if failure.body is None:
                response = self.error_response(failure.status, endpoint, request=request)
            elif isinstance(failure.body, str):
                response = Response(failure.body, status=failure.status)
            else:
                response = json_response(failure.body, failure.status)
        elif failure.kind == "malformed":
            response = Response(failure.body or MALFORMED_BODY, mimetype="application/json")
        else:  # bad_shape
            response = json_response(failure.body or self.bad_shape_body(endpoint))
        response.headers.update(failure.headers)
        return response

    def _record(self, request: Request) -> RecordedRequest:
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.args.to_dict(),
            headers={name.lower(): value for name, value in request.headers.items()},
        )
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            record.form = request.form.to_dict()
        else:
            record.json = parse_json_body(request)[1]
        self.requests.append(record)
        return record


def _drop_connection(environ: dict) -> None:
    """Close the client's connection with no response at all, then unwind quietly."""
    sock = environ["werkzeug.socket"]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.shutdown(socket.SHUT_RDWR)
    # werkzeug treats ConnectionError from the app as "client went away": no log, no 500.
    raise ConnectionResetError("fake upstream dropped the connection on purpose")
