"""Unit tests of the trigger's pure parts: walking to the frontier, retries, signatures, targets."""

from __future__ import annotations

import random
import socket

import time

import pytest

from connector.errors import BadRequest
from connector.records import Page, user_record
from connector.trigger.crypto import decrypt_credentials, encrypt_credentials
from connector.trigger.deliver import retry_delay
from connector.trigger.signing import new_webhook_secret, signed_headers
from connector.trigger.detect import LoopDetected, walk
from connector.trigger.events import event_id, event_payload
from connector.trigger.targets import check_target_url
from tests.trigger_kit import WebhookVerificationError, verify


def rec(n: int) -> dict:
    return user_record({"id": str(n), "uniqueId": f"user{n}"}, {"followerCount": n})


class Listing:
    """A newest-first list served in pages of ``size``; cursors are indexes."""

    def __init__(self, ids, size=5):
        self.ids, self.size, self.reads = list(ids), size, []

    def fetch(self, cursor):
        start = cursor or 0
        self.reads.append(start)
        chunk = self.ids[start:start + self.size]
        end = start + len(chunk)
        return Page(records=[rec(i) for i in chunk], next_cursor=end, has_more=end < len(self.ids))


def seen_of(ids):
    keys = {f"id:{i}" for i in ids}
    return lambda batch: {k for k in batch if k in keys}


def new_ids(result):
    return [int(key.split(":")[1]) for key, _ in result.new]


def test_walk_stops_at_a_run_of_seen_followers():
    listing = Listing([100, 99] + list(range(50, 0, -1)))
    result = walk(listing.fetch, seen_of(range(1, 51)), run=3)
    assert new_ids(result) == [100, 99] and result.reason == "frontier" and result.pages == 1


def test_a_refollower_on_top_does_not_hide_the_new_ones_below():
    # 40 re-followed (seen) sits above two new followers
    listing = Listing([40, 100, 99] + list(range(50, 0, -1)))
    result = walk(listing.fetch, seen_of(range(1, 51)), run=3)
    assert new_ids(result) == [100, 99]


def test_walk_crosses_pages_and_spends_only_its_budget():
    listing = Listing(list(range(200, 100, -1)) + list(range(50, 0, -1)), size=10)
    first = walk(listing.fetch, seen_of(range(1, 51)), run=3, max_pages=4)
    assert first.reason == "budget" and first.pages == 4 and len(first.new) == 40 and first.cursor == 40
    rest = walk(listing.fetch, seen_of(list(range(1, 51)) + list(range(200, 160, -1))), start=first.cursor, run=3)
    assert rest.finished and new_ids(rest) == list(range(160, 100, -1))


def test_walk_ends_with_the_list_and_on_short_lists():
    assert walk(Listing([3, 2]).fetch, seen_of([2]), run=3).reason == "end"
    assert new_ids(walk(Listing([3, 2]).fetch, seen_of([2]), run=3)) == [3]


def test_a_repeated_cursor_is_a_loop():
    def fetch(cursor):
        return Page(records=[rec(cursor or 1000)], next_cursor=7, has_more=True)
    with pytest.raises(LoopDetected):
        walk(fetch, seen_of([]), run=3, max_pages=10)


def test_unpaid_stops_where_it_was():
    listing = Listing(range(100, 0, -1))
    calls = []

    def fetch(cursor):
        calls.append(cursor)
        return listing.fetch(cursor) if len(calls) < 3 else None
    result = walk(fetch, seen_of([]), run=3)
    assert result.reason == "unpaid" and result.cursor == 10 and result.pages == 2


def test_event_ids_are_deterministic_and_shaped():
    assert event_id("w_1", "id:5") == event_id("w_1", "id:5") != event_id("w_2", "id:5")
    payload = event_payload("w_1", "id:5", rec(5), handle="h", provider="demo", detected_at=0)
    assert payload["detectedAt"] == "1970-01-01T00:00:00Z"
    assert list(payload["follower"]) == ["id", "uniqueId", "nickname", "avatarThumb", "signature", "verified",
                                         "secUid", "privateAccount", "followerCount", "followingCount",
                                         "heartCount", "videoCount", "profileUrl"]
    assert payload["follower"]["profileUrl"] == "https://www.tiktok.com/@user5"


def test_signatures_verify_with_the_spec_verifier():
    secret = new_webhook_secret()
    body = '{"id":"evt_1"}'
    headers = signed_headers(secret, "evt_1", body, int(time.time()))
    assert verify(secret, headers, body.encode()) == {"id": "evt_1"}
    with pytest.raises(WebhookVerificationError):
        verify(new_webhook_secret(), headers, body.encode())
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, b'{"id":"evt_2"}')


def test_retry_delay_follows_the_schedule_with_jitter_and_retry_after():
    rng = random.Random(1)
    schedule = (30, 120)
    first = retry_delay(schedule, 1, None, rng)
    assert 30 * 0.9 <= first <= 30 * 1.2 and first != 30
    assert retry_delay(schedule, 2, 600, rng) == 600
    assert 120 * 0.9 <= retry_delay(schedule, 2, 5, rng) <= 120 * 1.2
    assert retry_delay(schedule, 3, None, rng) is None


def test_the_default_schedule_spans_72_hours():
    from connector.config import DEFAULT_RETRY_SCHEDULE
    rng = random.Random(2)
    shortest = sum(retry_delay(DEFAULT_RETRY_SCHEDULE, n, None, rng) for n in range(1, len(DEFAULT_RETRY_SCHEDULE) + 1))
    assert sum(DEFAULT_RETRY_SCHEDULE) * 0.9 > 72 * 3600 and shortest > 72 * 3600


def test_target_urls():
    public = lambda host, port, type: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]  # noqa: E731
    private = lambda host, port, type: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.4", port))]  # noqa: E731
    assert check_target_url("https://hooks.example.com/x", allow_private=False, resolve=public)
    with pytest.raises(BadRequest, match="must be public"):
        check_target_url("https://rebind.example.com/x", allow_private=False, resolve=private)
    assert check_target_url("https://rebind.example.com/x", allow_private=True, resolve=private)
    with pytest.raises(BadRequest, match="user name or password"):
        check_target_url("https://u:p@hooks.example.com/x", allow_private=False, resolve=public)
    with pytest.raises(BadRequest, match="not a valid URL"):
        check_target_url("https://hooks.example.com:99999/x", allow_private=False, resolve=public)


def test_stored_provider_keys_round_trip_and_need_the_secret():
    token = encrypt_credentials("k1", "sk_live_abc")
    assert "sk_live_abc" not in token and decrypt_credentials("k1", token) == "sk_live_abc"
    with pytest.raises(ValueError, match="changed"):
        decrypt_credentials("k2", token)
    with pytest.raises(BadRequest, match="CONNECTOR_SECRET_KEY"):
        encrypt_credentials(None, "sk_live_abc")
