"""The poller benchmark's steady upstream page, and a light fake Dumpling serving it.

:func:`nginx_upstream` serves :data:`STEADY`'s page to every handle from a private nginx
(:mod:`bench.tools`, echo module) after ``BENCH_LATENCY`` seconds: written in C, so the
upstream is never the limit; the poller benchmark uses it. ``bench.steady_upstream:app``
is the same in Python for gunicorn (per handle pages; kept for runs without nginx).

Every handle has the same steady newest page: 30 followers whose ids derive from the
handle (:func:`follower_ids`), so a watch that has seen them reads one page and stops at
its frontier. Each answer sleeps ``BENCH_LATENCY`` seconds (default 0.1) first, standing
in for the real upstream's latency. Plain WSGI and pre-serialised bodies, so the fake
spends almost no CPU of its own (the werkzeug test fakes add ~10 ms a request).
Speaks the Dumpling wire format of ``POST /api/v1/get-tiktok-user-followers`` only.
"""

from __future__ import annotations

import functools
import json
import os
import time
import zlib

API_KEY = "sk_bench"
PATH = "/api/v1/get-tiktok-user-followers"
PAGE_SIZE = 30
LATENCY = float(os.environ.get("BENCH_LATENCY", "0.1"))
_START = 1_700_000_000
STEADY = "steady"        # the handle whose page nginx_upstream serves to every handle


def follower_ids(handle: str) -> list[str]:
    """The ids of the handle's steady page, newest first."""
    base = zlib.crc32(handle.encode())
    return [f"7{base:010d}{i:04d}" for i in range(PAGE_SIZE)]


@functools.lru_cache(maxsize=65536)
def _body(handle: str) -> bytes:
    items = [{"user": {"id": fid, "uniqueId": f"fan_{fid[-8:]}", "nickname": f"Fan {fid[-4:]}",
                       "avatarThumb": f"https://p16.tiktokcdn.test/{fid}.jpeg", "signature": "",
                       "verified": False, "secUid": f"MS4wLjABAAAA{fid}", "privateAccount": False},
              "stats": {"followerCount": 10, "followingCount": 20, "heartCount": 30, "videoCount": 4,
                        "diggCount": 5}}
             for fid in follower_ids(handle)]
    return json.dumps({"followers": items, "maxCursor": _START, "minCursor": _START - PAGE_SIZE + 1,
                       "hasMore": True, "total": 1000}).encode()


def nginx_upstream(latency: float = LATENCY):
    """A private nginx answering every POST with :data:`STEADY`'s page after ``latency`` s."""
    from . import tools

    server = ("default_type application/json;\nroot .;\nlocation = /page.json { internal; }\n"
              f"location / {{ echo_sleep {latency:g}; echo_location /page.json; }}")
    return tools.nginx(server, modules=("echo",), files={"page.json": _body(STEADY)})


def _answer(start_response, status: str, body: bytes):
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
        return _answer(start_response, "404 Not Found", b'{"error": "no such route"}')
    if environ.get("HTTP_AUTHORIZATION") != f"Bearer {API_KEY}":
        return _answer(start_response, "401 Unauthorized", b'{"error": "API key is invalid or missing."}')
    try:
        handle = str(json.loads(raw)["handle"]).lstrip("@").lower()
    except (ValueError, KeyError, TypeError):
        return _answer(start_response, "400 Bad Request", b'{"error": "Invalid JSON in request body"}')
    time.sleep(LATENCY)
    return _answer(start_response, "200 OK", _body(handle))
