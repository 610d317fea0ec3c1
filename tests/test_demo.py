"""The demo provider: deterministic accounts whose followers grow, and reserved error handles."""

import pytest

from connector.errors import UpstreamError
from connector.providers.demo import DEPTH_CAP, DemoProvider
from tests.clock import ManualClock


def test_same_answers_for_the_same_time():
    clock = ManualClock(1_790_000_000)
    a, b = DemoProvider(clock), DemoProvider(clock)
    assert a.list_followers("brand", count=5).records == b.list_followers("brand", count=5).records
    assert a.get_profile("brand") == b.get_profile("brand")


def test_followers_grow_at_the_top_and_keep_their_identity():
    clock = ManualClock(1_790_000_000)
    demo = DemoProvider(clock)
    before = demo.list_followers("brand", count=50).records
    clock.advance(1800)
    after = demo.list_followers("brand", count=100).records
    before_ids = [r["user"]["id"] for r in before]
    after_ids = [r["user"]["id"] for r in after]
    new = after_ids.index(before_ids[0])
    assert 16 <= new <= 90  # one follower every 20-110 s
    overlap = min(len(before_ids), len(after_ids) - new)
    assert overlap >= 10 and after_ids[new:new + overlap] == before_ids[:overlap]


def test_walk_to_the_depth_cap_without_duplicates():
    demo = DemoProvider(ManualClock(1_790_000_000))
    seen, cursor, pages = set(), None, 0
    while True:
        page = demo.list_followers("brand", cursor=cursor, count=100)
        pages += 1
        for record in page.records:
            assert record["user"]["id"] not in seen
            seen.add(record["user"]["id"])
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert len(seen) == DEPTH_CAP and pages == DEPTH_CAP // 100


@pytest.mark.parametrize("handle,kind", [("demo_private", "not_found"), ("demo_missing", "not_found"),
                                         ("demo_ratelimited", "rate_limited"), ("demo_unavailable", "unavailable"),
                                         ("demo_invalid", "invalid_data"), ("demo_authfail", "auth_failed"),
                                         ("demo_unprocessable", "could_not_process")])
def test_reserved_handles(handle, kind):
    demo = DemoProvider()
    for call in (demo.get_profile, demo.list_followers, demo.list_following):
        with pytest.raises(UpstreamError) as info:
            call(handle)
        assert info.value.kind == kind


@pytest.mark.parametrize("handle,status,message", [
    ("demo_private", 404, "Followers list not found for user: demo_private"),
    ("demo_ratelimited", 503, "Rate limit exceeded. Please try again later."),
    ("demo_unavailable", 502, "The followers service is currently unavailable."),
    ("demo_invalid", 502, "Received invalid data structure from followers service."),
    ("demo_authfail", 500, "Service authentication failed. Please contact support."),
    ("demo_unprocessable", 400, "The followers service could not process the handle."),
])
def test_reserved_handles_over_http(demo, handle, status, message):
    r = demo.post("/api/v1/get-tiktok-user-followers", {"handle": handle})
    # An upstream rate limit adds whose limit it is after the seed's words.
    error = r.json()["error"].split(" This is the demo data provider's limit")[0]
    assert (r.status_code, error) == (status, message)


def test_garbage_cursor_is_a_400_not_a_500(demo):
    r = demo.post("/api/v1/get-tiktok-user-followers", {"handle": "brand", "minTime": "dm_!!!"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("'minTime' must be the minCursor of a previous response from this provider")


def test_paging_over_http_with_opaque_cursor(demo):
    first = demo.post("/api/v1/get-tiktok-user-followers", {"handle": "brand", "count": 10}).json()
    second = demo.post("/api/v1/get-tiktok-user-followers",
                       {"handle": "brand", "count": 10, "minTime": first["minCursor"]}).json()
    ids1 = {f["user"]["id"] for f in first["followers"]}
    ids2 = {f["user"]["id"] for f in second["followers"]}
    assert len(ids1) == len(ids2) == 10 and not ids1 & ids2
    assert isinstance(first["minCursor"], str)
