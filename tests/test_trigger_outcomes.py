"""One receiver's answer never breaks another's delivery: answers are cleaned before they
are stored, an outcome that cannot be written is written alone and then as a bare failure
(counted and backed off), and a receiver that answered 2xx never gets the delivery again.

Real service, fake Dumpling and receivers on loopback, SQLite and PostgreSQL; time moves
through ``svc.clock``."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from connector.trigger import deliver
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import deliveries, delivery_attempts, subscriptions
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.trigger_kit import HANDLE, Receiver, dumpling, make_due, trigger_settings, verify, world  # noqa: F401

SCHEDULE = (60, 600, 3600)
NUL_ANSWER = (500, {"Content-Type": "text/plain"}, b"broken\x00receiver \x1b[31m\x07" + "é".encode() * 3)


@pytest.fixture
def receivers():
    good, bad = Receiver(), Receiver()
    bad.respond = lambda received: NUL_ANSWER
    yield good, bad
    good.close()
    bad.close()


@pytest.fixture
def live(serve, dumpling, database_url):  # noqa: F811
    live = serve(trigger_settings(dumpling, database_url, webhook_retry_schedule=SCHEDULE))
    live.services.clock = ManualClock(live.services.clock())
    return live


def subscribe(live, name: str, url: str) -> tuple[dict, object]:
    raw, _ = live.services.keys.create(name=name)
    with live.client(raw) as http:
        r = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE, "targetUrl": url})
        assert r.status_code == 201, r.text
        return r.json(), raw


def rows(svc, sub_id: str):
    with svc.store.connect() as conn:
        return conn.execute(sa.select(deliveries).where(deliveries.c.subscription_id == sub_id)
                            .order_by(deliveries.c.id)).mappings().all()


def attempts(svc, sub_id: str):
    with svc.store.connect() as conn:
        return conn.execute(sa.select(delivery_attempts).where(delivery_attempts.c.subscription_id == sub_id)
                            ).mappings().all()


def checked(receiver: Receiver, secret: str) -> Counter:
    """Every delivery's signature verified by the official Standard Webhooks package; how
    often each webhook-id arrived."""
    for received in receiver.requests:
        assert verify(secret, received.headers, received.body)["id"] == received.headers["webhook-id"]
    return Counter(r.headers["webhook-id"] for r in receiver.requests)


def test_a_receiver_answering_a_nul_byte_breaks_no_other_delivery(live, world, receivers):  # noqa: F811
    svc, clock = live.services, live.services.clock
    good, bad = receivers
    good_hook, _ = subscribe(live, "good", good.url)
    bad_hook, bad_key = subscribe(live, "bad", bad.url)
    world.add_followers(HANDLE, 3)
    make_due(svc)
    poll_due_watches(svc)
    assert deliver_due_webhooks(svc) == Counter(delivered=3, retry=3)
    started = clock()

    # The good hook got each event once; the bad hook's attempts are recorded, the
    # receiver's answer stored as clean text, and each is backed off on the schedule.
    assert set(checked(good, good_hook["secret"]).values()) == {1} and len(good.requests) == 3
    assert len(bad.requests) == 3
    bad_rows = rows(svc, bad_hook["id"])
    assert [(r["status"], r["attempts"], r["last_status"]) for r in bad_rows] == [("pending", 1, 500)] * 3
    assert {r["last_error"] for r in bad_rows} == {"HTTP 500: brokenreceiver [31mééé"}
    assert all(started + SCHEDULE[0] * 0.9 <= r["next_attempt_at"] <= started + SCHEDULE[0] * 1.2 + 1
               for r in bad_rows)
    assert [a["status_code"] for a in attempts(svc, bad_hook["id"])] == [500] * 3
    with live.client(bad_key) as http:
        view = http.get(f"/api/v1/hooks/{bad_hook['id']}").json()
    assert view["lastDeliveryError"] == "HTTP 500: brokenreceiver [31mééé" and view["pendingDeliveries"] == 3

    # Nothing is due until the backoff is over; past a delivery lease nothing comes back either.
    assert deliver_due_webhooks(svc) == Counter()
    clock.advance(SCHEDULE[0] * 1.2 + svc.settings.delivery_lease + 1)
    assert deliver_due_webhooks(svc) == Counter(retry=3)
    assert len(bad.requests) == 6 and [r["attempts"] for r in rows(svc, bad_hook["id"])] == [2] * 3
    assert set(checked(bad, bad_hook["secret"]).values()) == {2}
    assert len(good.requests) == 3                                      # each event exactly once


def test_an_outcome_that_cannot_be_written_is_recorded_alone_as_a_failure(live, world, receivers,  # noqa: F811
                                                                          monkeypatch, database_url):
    """Were a receiver's answer ever stored raw (here the cleaning is switched off), the batch
    that holds it fails on PostgreSQL ("text fields cannot contain NUL"): each outcome is then
    written alone, and the one that still fails is written as a bare failure of its delivery."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite stores a NUL in text; PostgreSQL refuses it")
    svc, clock = live.services, live.services.clock
    good, bad = receivers
    good_hook, _ = subscribe(live, "good", good.url)
    bad_hook, _ = subscribe(live, "bad", bad.url)
    monkeypatch.setattr(deliver, "clean_text", lambda text, limit=500: text[:limit])
    world.add_followers(HANDLE, 2)
    make_due(svc)
    poll_due_watches(svc)
    assert deliver_due_webhooks(svc) == Counter(delivered=2, retry=2)
    started = clock()
    assert [(r["status"], r["attempts"]) for r in rows(svc, good_hook["id"])] == [("delivered", 1)] * 2
    bad_rows = rows(svc, bad_hook["id"])
    assert [(r["status"], r["attempts"], r["last_status"], r["claimed_until"]) for r in bad_rows] == \
        [("pending", 1, 500, None)] * 2                                 # counted, not left to its lease
    assert {r["last_error"] for r in bad_rows} == {f"{deliver.UNRECORDED} (HTTP 500)"}
    assert all(r["next_attempt_at"] >= started + SCHEDULE[0] * 0.9 for r in bad_rows)   # backed off

    clock.advance(SCHEDULE[0] * 1.2 + svc.settings.delivery_lease + 1)
    assert deliver_due_webhooks(svc) == Counter(retry=2)
    assert [r["attempts"] for r in rows(svc, bad_hook["id"])] == [2] * 2
    assert set(checked(good, good_hook["secret"]).values()) == {1} and len(good.requests) == 2
    with svc.store.connect() as conn:
        assert conn.execute(sa.select(subscriptions.c.status).where(
            subscriptions.c.id == good_hook["id"])).scalar_one() == "active"
