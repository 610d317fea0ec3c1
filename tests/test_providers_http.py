"""The resilience every network provider shares (connector/providers/http.py) and the
paginator's loop guard: httpx.MockTransport units plus loopback runs against the fakes."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from connector.config import Settings
from connector.errors import UpstreamError
from connector.providers.dumpling import DumplingProvider
from connector.providers.http import RetryPolicy, UpstreamHTTP, parse_retry_after, read_json
from connector.providers.paging import Paginator
from tests.paging import iter_pages
from connector.records import Page
from tests.clock import ManualClock
from tests.fakes import FakeDumpling, FakeWorld

SECRET = "sk_live_abcdef123456"


def upstream(handler, **policy) -> tuple[UpstreamHTTP, list[float]]:
    """An UpstreamHTTP over a MockTransport on a clock the test owns: sleeps are recorded and move
    the clock, never the wall clock."""
    slept: list[float] = []
    clock = ManualClock(0)

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    http = UpstreamHTTP("https://upstream.test", provider="t", transport=httpx.MockTransport(handler),
                        policy=RetryPolicy(**{"max_attempts": 3, "backoff_base": 0.1, "backoff_cap": 1.0,
                                              "deadline": 10.0, **policy}),
                        secrets=(SECRET,), headers={"Authorization": f"Bearer {SECRET}"},
                        clock=clock, sleep=sleep, rng=random.Random(19))
    return http, slept


def answers(*responses):
    """A handler that plays ``responses`` in order (an exception instance is raised)."""
    calls = []

    def handler(request):
        item = responses[min(len(calls), len(responses) - 1)]
        calls.append(request)
        if isinstance(item, Exception):
            raise item
        return item

    handler.calls = calls
    return handler


def test_retries_5xx_then_returns_success():
    handler = answers(httpx.Response(503), httpx.Response(502), httpx.Response(200, json={"ok": 1}))
    http, slept = upstream(handler)
    assert http.request("GET", "/x").json() == {"ok": 1}
    assert len(handler.calls) == 3 and len(slept) == 2
    assert all(0 <= s <= 1.0 for s in slept)


def test_gives_up_after_max_attempts_and_returns_the_last_answer():
    handler = answers(httpx.Response(500))
    http, slept = upstream(handler)
    assert http.request("GET", "/x").status_code == 500
    assert len(handler.calls) == 3 and len(slept) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status):
    handler = answers(httpx.Response(status))
    http, slept = upstream(handler)
    assert http.request("GET", "/x").status_code == status
    assert len(handler.calls) == 1 and slept == []


def test_retry_after_is_honoured():
    handler = answers(httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json={}))
    http, slept = upstream(handler)
    assert http.request("GET", "/x").status_code == 200
    assert slept == [2.0]


def test_retry_after_beyond_the_deadline_returns_at_once_with_the_wait():
    handler = answers(httpx.Response(429, headers={"Retry-After": "120"}))
    http, slept = upstream(handler)
    response = http.request("GET", "/x")
    assert response.status_code == 429 and slept == [] and len(handler.calls) == 1
    assert response.extensions["retry_after"] == 120.0


@pytest.mark.parametrize("value, expected", [
    ("3", 3.0), ("0", 0.0), ("-5", 0.0), ("inf", 86400.0), ("1e400", 86400.0), ("nan", None),
    ("soon", None), ("", None), (None, None),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after(when) <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_infinite_retry_after_never_becomes_a_500(serve, make_settings):
    """Bug: Retry-After "inf" reached int() in the 503 answer and raised OverflowError."""
    world = FakeWorld(seed=2)
    world.add_account("alice", followers=3)
    with FakeDumpling(world) as fake:
        fake.fail_next(1, status=429, headers={"Retry-After": "inf"})
        live = serve(make_settings(provider="dumpling", dumpling_api_key=fake.api_key,
                                   dumpling_base_url=fake.url, upstream_max_attempts=1))
        raw, _ = live.services.keys.create()
        with live.client(raw) as client:
            r = client.post("/api/v1/get-tiktok-user-followers", json={"handle": "alice"})
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) == 86400


def test_transport_errors_are_retried_then_unavailable_without_secrets():
    handler = answers(httpx.ConnectError(f"refused for key {SECRET}"))
    http, slept = upstream(handler)
    with pytest.raises(UpstreamError) as caught:
        http.request("GET", "/x")
    assert caught.value.kind == "unavailable" and len(handler.calls) == 3
    assert SECRET not in caught.value.detail and SECRET not in str(caught.value)


def test_timeouts_are_retried_then_unavailable():
    handler = answers(httpx.ReadTimeout("slow"), httpx.Response(200, json={"ok": True}))
    http, _ = upstream(handler)
    assert http.request("GET", "/x").json() == {"ok": True}
    handler = answers(httpx.ReadTimeout("slow"))
    http, _ = upstream(handler)
    with pytest.raises(UpstreamError) as caught:
        http.request("GET", "/x")
    assert caught.value.kind == "unavailable" and "timeout" in caught.value.detail


def test_undecodable_body_is_invalid_data_not_a_crash():
    """Bug: httpx.DecodingError is no TransportError and escaped as a 500."""
    handler = answers(httpx.Response(200, headers={"Content-Encoding": "gzip"},
                                     stream=httpx.ByteStream(b"not gzip at all")))
    http, _ = upstream(handler)
    with pytest.raises(UpstreamError) as caught:
        http.request("GET", "/x")
    assert caught.value.kind == "invalid_data" and len(handler.calls) == 1


def test_deadline_bounds_the_whole_request():
    handler = answers(httpx.Response(503))
    http, slept = upstream(handler, max_attempts=50, backoff_base=1.0, backoff_cap=1.0, deadline=2.0)
    assert http.request("GET", "/x").status_code == 503
    assert 0 < sum(slept) < 2.0                  # the clock moved only by the waits, all inside the deadline
    assert len(handler.calls) < 50


def test_the_jitter_comes_from_the_rng_passed_in():
    waits = [upstream(answers(httpx.Response(503)), max_attempts=4)[0] for _ in range(2)]
    slept = []
    for http in waits:
        http.sleep = slept.append
        http.request("GET", "/x")
    assert len(slept) == 6 and slept[:3] == slept[3:]   # the same seed, the same waits
    assert len(set(slept[:3])) == 3 and all(0 <= s <= 1.0 for s in slept)


def test_each_attempt_gets_only_the_time_left():
    seen = []

    def handler(request):
        seen.append(request.extensions["timeout"]["read"])
        return httpx.Response(200)

    http, _ = upstream(handler, deadline=3.0)
    http.request("GET", "/x")
    assert 0 < seen[0] <= 3.0


def test_settings_carry_the_retry_policy():
    settings = Settings(upstream_max_attempts=5, upstream_backoff_base=0.01, upstream_backoff_cap=0.02,
                        upstream_deadline=7.0)
    http = UpstreamHTTP("https://upstream.test", provider="t", settings=settings)
    assert http.policy == RetryPolicy(max_attempts=5, backoff_base=0.01, backoff_cap=0.02, deadline=7.0)
    http.close()


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_read_json_refuses_anything_but_an_object(body):
    with pytest.raises(UpstreamError) as caught:
        read_json(httpx.Response(200, content=body), "followers", "t")
    assert caught.value.kind == "invalid_data"


# -- loopback: the fakes' fail_next through a real provider --------------------------------------

@pytest.fixture
def dumpling_fake():
    world = FakeWorld(seed=3)
    world.add_account("alice", followers=40)
    with FakeDumpling(world) as fake:
        yield fake


def dumpling(fake, **settings) -> DumplingProvider:
    base = dict(upstream_max_attempts=3, upstream_backoff_base=0.01, upstream_backoff_cap=0.02,
                upstream_deadline=5.0, upstream_read_timeout=0.5, dumpling_api_key=fake.api_key,
                dumpling_base_url=fake.url)
    base.update(settings)
    return DumplingProvider.from_settings(Settings(**base))


@pytest.mark.parametrize("kind", ["status", "reset", "timeout"])
def test_loopback_transient_failures_are_retried(dumpling_fake, kind):
    dumpling_fake.fail_next(2, kind=kind, status=502, seconds=1.0)
    provider = dumpling(dumpling_fake)
    page = provider.list_followers("alice", count=5)
    assert len(page.records) == 5
    assert [r.injected for r in dumpling_fake.requests] == [kind, kind, None]
    provider.close()


def test_loopback_429_with_retry_after_waits_then_succeeds(dumpling_fake):
    dumpling_fake.fail_next(1, status=429, retry_after=1)
    provider = dumpling(dumpling_fake)
    slept: list[float] = []
    provider.http.sleep = slept.append
    page = provider.list_followers("alice", count=5)
    assert slept == [1.0]                         # it waited the upstream's Retry-After, then asked again
    assert len(page.records) == 5 and len(dumpling_fake.requests) == 2
    provider.close()


def test_loopback_malformed_is_invalid_data_and_not_retried(dumpling_fake):
    dumpling_fake.fail_next(1, kind="malformed")
    provider = dumpling(dumpling_fake)
    with pytest.raises(UpstreamError) as caught:
        provider.list_followers("alice")
    assert caught.value.kind == "invalid_data" and len(dumpling_fake.requests) == 1
    provider.close()


# -- the paginator ---------------------------------------------------------------------------------

def test_paginator_refuses_a_cursor_that_comes_back():
    pages = {None: Page([], next_cursor=10, has_more=True), 10: Page([], next_cursor=20, has_more=True),
             20: Page([], next_cursor=10, has_more=True)}
    walked = []
    with pytest.raises(UpstreamError) as caught:
        for page in iter_pages(lambda cursor: (walked.append(cursor), pages[cursor])[1], provider="t"):
            pass
    assert walked == [None, 10, 20]
    assert caught.value.kind == "invalid_data" and "loop detected" in caught.value.detail


def test_paginator_refuses_the_start_cursor_and_equal_spellings():
    paginator = Paginator(1700000000)
    with pytest.raises(UpstreamError):
        paginator.advance(Page([], next_cursor="1700000000", has_more=True))


def test_paginator_stops_at_the_last_page_and_at_max_pages():
    def fetch(cursor):
        n = cursor or 0
        return Page([], next_cursor=n + 1, has_more=n < 4)

    assert len(list(iter_pages(fetch))) == 5
    assert len(list(iter_pages(fetch, max_pages=2))) == 2
    # hasMore with no cursor to follow ends the walk instead of restarting it from the top.
    assert len(list(iter_pages(lambda c: Page([], next_cursor=None, has_more=True)))) == 1
