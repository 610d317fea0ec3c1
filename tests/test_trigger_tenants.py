"""Many tenants on one service: no key spends, reads or holds what belongs to another.

Real service, fake Dumpling and webhook receivers on loopback; time moves through
``svc.clock`` instead of sleeping (disabling, retention, leases).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from connector.errors import NO_CREDITS
from connector.trigger import outbox
from connector.trigger.deliver import claim_due_deliveries
from connector.trigger.retention import prune
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import (deliveries, delivery_attempts, events, inbox, seen_followers, subscriptions,
                                      watches)
from connector.trigger.watches import delete_subscription
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.trigger_kit import (HANDLE, Receiver, dumpling, follower_pages, make_due, receiver,  # noqa: F401
                               trigger_settings, world)

HOOKS = "/api/v1/hooks"
POLL = "/api/v1/triggers/new-follower"
DAY = 86400.0


def hook_body(url: str, handle: str = HANDLE) -> dict:
    return {"event": "new_follower", "handle": handle, "targetUrl": url}


def cycle(svc):
    make_due(svc)
    poll_due_watches(svc)
    deliver_due_webhooks(svc)


def count(svc, table, *where) -> int:
    with svc.store.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


@pytest.fixture
def live(serve, dumpling, database_url):  # noqa: F811
    return serve(trigger_settings(dumpling, database_url))


# -- who pays ---------------------------------------------------------------------------------

def test_a_key_without_credits_spends_nobody_elses(live, dumpling, receiver):  # noqa: F811
    svc = live.services
    a_raw, a = svc.keys.create(name="A", credits=100)
    b_raw, b = svc.keys.create(name="B", credits=0)
    with live.client(a_raw) as http_a:
        assert http_a.post(HOOKS, json=hook_body(receiver.url)).status_code == 201
    assert svc.keys.balance(a["id"]) == 99                              # A's baseline
    pages = follower_pages(dumpling)
    with live.client(b_raw) as http_b:
        for attempt in range(10):
            r = http_b.post(HOOKS, json=hook_body(f"{receiver.url}?b={attempt}"))
            assert r.status_code == 403 and r.json() == {"error": NO_CREDITS}
        r = http_b.post(POLL, json={"handle": HANDLE})
        assert r.status_code == 403 and r.json() == {"error": NO_CREDITS}
        assert http_b.get(HOOKS).json() == {"hooks": []}
    assert svc.keys.balance(a["id"]) == 99                              # nothing of A's was spent
    assert follower_pages(dumpling) == pages                            # and nothing was read for B
    assert count(svc, subscriptions, subscriptions.c.key_id == b["id"]) == 0


def test_a_key_reads_only_what_it_paid_for(live, world, dumpling):  # noqa: F811
    svc = live.services
    a_raw, _ = svc.keys.create(name="A")
    with live.client(a_raw) as http_a:
        assert len(http_a.post(POLL, json={"handle": HANDLE}).json()["events"]) == 30
        world.add_followers(HANDLE, 40)
        make_due(svc)
        a_events = http_a.post(POLL, json={"handle": HANDLE, "limit": 100}).json()["events"]
        assert len(a_events) == 70
    poor_raw, _ = svc.keys.create(name="poor", credits=0)
    pages = follower_pages(dumpling)
    with live.client(poor_raw) as http:
        r = http.post(POLL, json={"handle": HANDLE, "limit": 100})
        assert r.status_code == 403 and follower_pages(dumpling) == pages
    b_raw, b = svc.keys.create(name="B", credits=5)
    with live.client(b_raw) as http_b:
        b_events = http_b.post(POLL, json={"handle": HANDLE, "limit": 100}).json()["events"]
    assert follower_pages(dumpling) == pages + 1 and svc.keys.balance(b["id"]) == 4   # B paid its own read
    top_page = {user.id for user, _ in world[HANDLE].followers[:30]}
    assert {e["follower"]["id"] for e in b_events} == top_page          # that page, not A's history
    assert len({e["id"] for e in a_events} - {e["id"] for e in b_events}) == 40


def test_a_paused_subscription_is_refused_before_anything_is_read(live, world, dumpling, receiver):  # noqa: F811
    svc = live.services
    a_raw, _ = svc.keys.create(name="A")
    with live.client(a_raw) as http_a:
        http_a.post(HOOKS, json=hook_body(receiver.url))
    c_raw, c = svc.keys.create(name="C", credits=1)
    with live.client(c_raw) as http_c:
        assert http_c.post(POLL, json={"handle": HANDLE}).status_code == 200     # its catch-up: 1 credit
        assert svc.keys.balance(c["id"]) == 0
        world.add_followers(HANDLE, 2)
        make_due(svc)
        poll_due_watches(svc)                                            # A pays; C cannot: paused
        with svc.store.connect() as conn:
            assert conn.execute(sa.select(subscriptions.c.status).where(
                subscriptions.c.key_id == c["id"])).scalar_one() == "paused_credits"
        pages = follower_pages(dumpling)
        r = http_c.post(POLL, json={"handle": HANDLE})                   # not due, but paused: 403
        assert r.status_code == 403 and follower_pages(dumpling) == pages
        make_due(svc)
        r = http_c.post(POLL, json={"handle": HANDLE})                   # due: still nothing read for C
        assert r.status_code == 403 and follower_pages(dumpling) == pages
        svc.keys.top_up(c["id"], 3)
        r = http_c.post(POLL, json={"handle": HANDLE, "limit": 100})
        assert r.status_code == 200 and follower_pages(dumpling) == pages + 1
        assert len(r.json()["events"]) == 30                             # its samples; the 2 went by unpaid


def test_a_subscriber_pays_its_own_catch_up(live, world, receiver):  # noqa: F811
    svc = live.services
    a_raw, a = svc.keys.create(name="A", credits=10)
    b_raw, b = svc.keys.create(name="B", credits=10)
    other = Receiver()
    try:
        with live.client(a_raw) as http_a:
            assert http_a.post(HOOKS, json=hook_body(receiver.url)).status_code == 201
        early = world.add_followers(HANDLE, 3)                           # before B subscribes
        with live.client(b_raw) as http_b:
            assert http_b.post(HOOKS, json=hook_body(other.url)).status_code == 201
        assert (svc.keys.balance(a["id"]), svc.keys.balance(b["id"])) == (9, 9)
        deliver_due_webhooks(svc)
        assert {body["follower"]["id"] for body in receiver.delivered()} == {u.id for u in early}  # shared
        assert other.delivered() == []                                   # B's baseline
        late = world.add_followers(HANDLE, 1)
        cycle(svc)
        assert (svc.keys.balance(a["id"]), svc.keys.balance(b["id"])) == (8, 8)   # the regular poll: both
        assert [body["follower"]["id"] for body in other.delivered()] == [late[0].id]
    finally:
        other.close()


# -- hooks: once each, limits ----------------------------------------------------------------

def test_subscribing_again_returns_the_same_hook(live, receiver, dumpling):  # noqa: F811
    svc = live.services
    raw, key = svc.keys.create(credits=10)
    with live.client(raw) as http:
        first = http.post(HOOKS, json=hook_body(receiver.url))
        pages = follower_pages(dumpling)
        again = http.post(HOOKS, json=hook_body(receiver.url), headers={"X-Request-Source": "ZAPIER"})
        assert first.status_code == 201 and again.status_code == 200
        assert again.json() == first.json()                              # same id and secret
        assert len(http.get(HOOKS).json()["hooks"]) == 1
    assert svc.keys.balance(key["id"]) == 9 and follower_pages(dumpling) == pages


def test_quotas_name_the_limit(serve, dumpling, world, sqlite_url, receiver):  # noqa: F811
    world.add_account("second", followers=5)
    world.add_account("third", followers=5)
    live = serve(trigger_settings(dumpling, sqlite_url, max_hooks_per_key=2, max_handles_per_key=2))
    raw, key = live.services.keys.create(credits=100)
    with live.client(raw) as http:
        assert http.post(HOOKS, json=hook_body(receiver.url + "?1")).status_code == 201
        assert http.post(HOOKS, json=hook_body(receiver.url + "?2")).status_code == 201
        pages, balance = follower_pages(dumpling), live.services.keys.balance(key["id"])
        r = http.post(HOOKS, json=hook_body(receiver.url + "?3"))
        assert r.status_code == 403
        assert "2 hooks, the most it may hold (2)" in r.json()["error"]
        assert "CONNECTOR_MAX_HOOKS_PER_KEY" in r.json()["error"]
        assert http.post(HOOKS, json=hook_body(receiver.url + "?2")).status_code == 200   # the same one: fine
        assert (follower_pages(dumpling), live.services.keys.balance(key["id"])) == (pages, balance)

        assert http.post(POLL, json={"handle": "second"}).status_code == 200
        r = http.post(POLL, json={"handle": "third"})
        assert r.status_code == 403 and "watches 2 accounts" in r.json()["error"]
        assert "CONNECTOR_MAX_HANDLES_PER_KEY" in r.json()["error"]
        assert http.post(POLL, json={"handle": "second"}).status_code == 200              # watched already


@pytest.mark.parametrize("how, stored", [({"headers": {"X-Request-Source": "ZAPIER"}}, "ZAPIER"),
                                         ({"requestSource": "MAKE_DOT_COM"}, "MAKE_DOT_COM"),
                                         ({}, "API")])
def test_hooks_keep_their_request_source(serve, dumpling, sqlite_url, receiver, how, stored):  # noqa: F811
    live = serve(trigger_settings(dumpling, sqlite_url))
    raw, _ = live.services.keys.create()
    body = hook_body(receiver.url)
    if "requestSource" in how:
        body["requestSource"] = how["requestSource"]
    with live.client(raw, headers=how.get("headers", {})) as http:
        hook = http.post(HOOKS, json=body).json()
    with live.services.store.connect() as conn:
        assert conn.execute(sa.select(subscriptions.c.request_source)
                            .where(subscriptions.c.id == hook["id"])).scalar_one() == stored
    assert {k["requests"].get(stored, 0) for k in live.services.keys.list()} == {1}


# -- failure without loss ---------------------------------------------------------------------

@pytest.mark.parametrize("how", ["unsubscribes", "pauses its hook"])
def test_a_hook_gone_or_paused_mid_poll_neither_breaks_the_commit_nor_costs_its_key(live, world, receiver,  # noqa: F811
                                                                                   monkeypatch, how):
    svc = live.services
    a_raw, a = svc.keys.create(name="A", credits=100)
    b_raw, b = svc.keys.create(name="B", credits=100)
    other = Receiver()
    try:
        with live.client(a_raw) as http_a:
            http_a.post(HOOKS, json=hook_body(receiver.url))
        with live.client(b_raw) as http_b:
            b_hook = http_b.post(HOOKS, json=hook_body(other.url)).json()
        before = (svc.keys.balance(a["id"]), svc.keys.balance(b["id"]))
        burst = world.add_followers(HANDLE, 40)                          # two pages
        reserve, calls = svc.keys.reserve, []

        def reserve_then_leave(caller, cost):
            calls.append(caller.id)
            if len(calls) == 3:                                          # page 2: B leaves now
                with svc.store.connect() as conn:
                    wid = conn.execute(sa.select(watches.c.id)).scalar_one()
                with svc.store.write() as conn:
                    if how == "unsubscribes":
                        delete_subscription(conn, b_hook["id"], wid)
                    else:
                        conn.execute(subscriptions.update().where(subscriptions.c.id == b_hook["id"])
                                     .values(status="paused"))
            return reserve(caller, cost)
        monkeypatch.setattr(svc.keys, "reserve", reserve_then_leave)
        make_due(svc)
        stats = poll_due_watches(svc)
        monkeypatch.undo()
        deliver_due_webhooks(svc)
        assert stats.errors == 0 and stats.events == 40
        assert {body["follower"]["id"] for body in receiver.delivered()} == {u.id for u in burst}
        assert other.delivered() == []
        assert count(svc, deliveries, deliveries.c.subscription_id == b_hook["id"]) == 0
        assert svc.keys.balance(a["id"]) == before[0] - 2
        assert svc.keys.balance(b["id"]) == before[1]                    # refunded: it received nothing
    finally:
        other.close()


def test_a_commit_that_fails_refunds_every_credit(live, world, receiver, monkeypatch):  # noqa: F811
    svc = live.services
    raw, key = svc.keys.create(credits=100)
    with live.client(raw) as http:
        http.post(HOOKS, json=hook_body(receiver.url))
    balance = svc.keys.balance(key["id"])
    burst = world.add_followers(HANDLE, 40)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(outbox, "store_events", broken)
    make_due(svc)
    assert poll_due_watches(svc).errors == 1
    assert svc.keys.balance(key["id"]) == balance                        # both pages given back
    assert count(svc, events, events.c.baseline.is_(False)) == 0
    monkeypatch.undo()
    cycle(svc)                                                           # the next poll finds them all
    assert {body["follower"]["id"] for body in receiver.delivered()} == {u.id for u in burst}
    assert svc.keys.balance(key["id"]) == balance - 2


def test_a_hook_failing_for_days_is_disabled_until_its_owner_enables_it(serve, database_url, world,  # noqa: F811
                                                                       dumpling):  # noqa: F811
    live = serve(trigger_settings(dumpling, database_url, hook_disable_after=3 * DAY,
                                  webhook_retry_schedule=(3600,) * 5))
    svc = live.services
    clock = ManualClock(svc.clock())
    svc.clock = clock
    failing = Receiver()
    failing.respond = lambda received: 500
    try:
        raw, key = svc.keys.create(credits=100)
        with live.client(raw) as http:
            hook = http.post(HOOKS, json=hook_body(failing.url)).json()
            first = world.add_followers(HANDLE, 1)
            cycle(svc)                                                   # fails: failing since now
            view = http.get(f"{HOOKS}/{hook['id']}").json()
            assert view["status"] == "active" and view["failingSince"] is not None
            assert view["lastDeliveryError"] == "HTTP 500"
            clock.advance(2 * DAY)
            deliver_due_webhooks(svc)                                    # two days: still trying
            assert http.get(f"{HOOKS}/{hook['id']}").json()["status"] == "active"
            clock.advance(1.5 * DAY)
            assert deliver_due_webhooks(svc)["disabled"] == 1           # 3.5 days without a success
            view = http.get(f"{HOOKS}/{hook['id']}").json()
            assert view["status"] == "disabled"
            assert "deliveries have failed since" in view["statusReason"]
            assert '{"enabled": true}' in view["statusReason"]

            balance, pages = svc.keys.balance(key["id"]), follower_pages(dumpling)
            world.add_followers(HANDLE, 2)
            cycle(svc)                                                   # disabled: not polled, not charged
            assert (svc.keys.balance(key["id"]), follower_pages(dumpling)) == (balance, pages)

            other_raw, _ = svc.keys.create()
            with live.client(other_raw) as stranger:
                assert stranger.patch(f"{HOOKS}/{hook['id']}", json={"enabled": True}).status_code == 404
            failing.respond = lambda received: 200
            view = http.patch(f"{HOOKS}/{hook['id']}", json={"enabled": True}).json()
            assert view["status"] == "active" and view["statusReason"] is None and view["failingSince"] is None
            deliver_due_webhooks(svc)                                    # the pending one goes out
            assert [b["follower"]["id"] for b in failing.delivered()] == [first[0].id]
            paused = http.patch(f"{HOOKS}/{hook['id']}", json={"enabled": False}).json()
            assert paused["status"] == "paused"
    finally:
        failing.close()


@pytest.mark.parametrize("body, fragment", [
    ('{"enabled": tru', "Invalid JSON"),
    ([True], "must be a JSON object"),
    ({}, "'enabled' is required and must be true"),
    ({"enabled": "yes"}, "'enabled' is required and must be true"),
    ({"enabled": True, "targetUrl": "http://x"}, "Unknown field 'targetUrl'. Allowed fields: enabled."),
])
def test_updating_a_hook_rejects_bad_input(serve, dumpling, sqlite_url, receiver, body, fragment):  # noqa: F811
    live = serve(trigger_settings(dumpling, sqlite_url))
    raw, _ = live.services.keys.create()
    with live.client(raw) as http:
        hook = http.post(HOOKS, json=hook_body(receiver.url)).json()
        url = f"{HOOKS}/{hook['id']}"
        r = http.patch(url, content=body) if isinstance(body, str) else http.patch(url, json=body)
        assert r.status_code == 400 and fragment in r.json()["error"], r.text
        assert "X-RateLimit-Remaining" in r.headers
        r = http.post(HOOKS, json={**hook_body(receiver.url), "requestSource": "FAX"})
        assert r.status_code == 400 and "'requestSource' must be one of" in r.json()["error"]


# -- leases, retention, reading through an index ----------------------------------------------

def test_a_claimed_delivery_outlives_its_longest_attempt(live, world, receiver):  # noqa: F811
    svc = live.services
    raw, _ = svc.keys.create()
    with live.client(raw) as http:
        http.post(HOOKS, json=hook_body(receiver.url))
    world.add_followers(HANDLE, 1)
    make_due(svc)
    poll_due_watches(svc)
    lease, now = svc.settings.delivery_lease, svc.clock()
    assert lease > svc.settings.delivery_timeout + 30
    claim = dict(store=svc.store, lease=lease, limit=10, per_host=8, per_key=8)
    assert len(claim_due_deliveries(now=now, due_before=now, **claim)) == 1
    later = now + svc.settings.delivery_timeout + 1                     # the attempt is over by now
    assert claim_due_deliveries(now=later, due_before=later, **claim) == []
    expired = now + lease + 1                                           # a crashed sender's row comes back
    assert len(claim_due_deliveries(now=expired, due_before=expired, **claim)) == 1


def test_retention_prunes_old_rows_in_batches_and_expires_idle_polling(serve, dumpling, world, database_url,  # noqa: F811
                                                                      receiver):  # noqa: F811
    world.add_account("second", followers=10)
    live = serve(trigger_settings(dumpling, database_url, worker={"prune_batch": 7}))
    svc = live.services
    clock = ManualClock(svc.clock())
    svc.clock = clock
    raw, _ = svc.keys.create()
    failing = Receiver()
    failing.respond = lambda received: 500
    try:
        with live.client(raw) as http:
            http.post(HOOKS, json=hook_body(receiver.url))
            http.post(HOOKS, json=hook_body(failing.url))
            assert http.post(POLL, json={"handle": "second"}).status_code == 200
            world.add_followers(HANDLE, 12)
            cycle(svc)
            for _ in range(len(svc.settings.webhook_retry_schedule) + 1):   # the failing hook's retries,
                deliver_due_webhooks(svc)                                  # to the last (none left pending)
                clock.advance(2)
        assert count(svc, deliveries, deliveries.c.status == "pending") == 0
        old = {t.name: count(svc, t) for t in (events, deliveries, delivery_attempts, inbox, seen_followers)}
        assert old["deliveries"] == 24 and old["delivery_attempts"] >= 24 and old["inbox"] == 10
        retention = svc.settings.retention_seconds
        assert retention >= sum(svc.settings.webhook_retry_schedule) * 1.2 + 7 * DAY

        with svc.store.write() as conn:                                 # a receiver's Retry-After put one off
            kept_id = conn.execute(sa.select(sa.func.min(deliveries.c.id))).scalar_one()
            conn.execute(deliveries.update().where(deliveries.c.id == kept_id)
                         .values(status="pending", next_attempt_at=clock.now + retention + DAY))
        clock.advance(retention - 60)                                   # not yet
        assert not any(prune(svc).values())
        clock.advance(120)
        world.add_followers(HANDLE, 2)
        cycle(svc)                                                      # new rows, kept
        pruned = prune(svc)
        assert pruned["events"] == old["events"] - 1 and pruned["deliveries"] == old["deliveries"] - 1
        assert pruned["attempts"] >= old["delivery_attempts"] and pruned["inbox"] == old["inbox"]
        assert count(svc, events) == 3 and count(svc, deliveries) == 5  # the one still to be retried stays
        assert count(svc, deliveries, deliveries.c.id == kept_id) == 1
        assert count(svc, seen_followers) == old["seen_followers"] + 2  # what keeps re-fires away stays
        assert pruned["poll_subscriptions"] == 0

        clock.advance(svc.settings.poll_subscription_ttl)               # nobody polled "second" since
        assert prune(svc)["poll_subscriptions"] == 1
        with svc.store.connect() as conn:
            assert [row.handle for row in conn.execute(sa.select(watches.c.handle))] == [HANDLE]
            assert conn.execute(sa.select(sa.func.count()).select_from(subscriptions)).scalar_one() == 2
    finally:
        failing.close()


def test_the_polling_route_reads_through_an_index(serve, dumpling, world, sqlite_url):  # noqa: F811
    live = serve(trigger_settings(dumpling, sqlite_url))
    raw, _ = live.services.keys.create()
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM inbox JOIN events" in statement:
            statements.append((statement, parameters))
    sa.event.listen(live.services.store.engine, "before_cursor_execute", capture)
    with live.client(raw) as http:
        assert len(http.post(POLL, json={"handle": HANDLE, "limit": 5}).json()["events"]) == 5
    statement, parameters = statements[-1]
    with live.services.store.connect() as conn:
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
    assert "TEMP B-TREE" not in plan, plan                              # no sort of the watch's history
    assert "inbox USING PRIMARY KEY" in plan or "sqlite_autoindex_inbox" in plan, plan


# -- found in review: each bug with the test that catches it ----------------------------------

def test_slow_names_never_hold_up_another_lookup():
    import socket
    import threading

    from connector.trigger.targets import lookup

    answered = threading.Event()                                        # slow names answer only at the end

    def slow(host, port, type=None):
        answered.wait(30)
        raise OSError("no answer")

    def fast(host, port, type=None):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]
    try:
        for i in range(20):                                             # one key's hooks on 20 slow names
            with pytest.raises(TimeoutError):                           # each gives up after its own timeout
                lookup(f"slow{i}.attacker.example", 80, timeout=0.01, resolve=slow)
        assert lookup("hooks.example.com", 443, timeout=1, resolve=fast)[0][4] == ("93.184.216.34", 443)
    finally:
        answered.set()


def test_a_late_subscriber_neither_pays_for_nor_receives_an_older_backlog(serve, dumpling, world,  # noqa: F811
                                                                          sqlite_url, receiver):  # noqa: F811
    live = serve(trigger_settings(dumpling, sqlite_url, worker={"page_budget": 2}))
    svc = live.services
    a_raw, _ = svc.keys.create(name="A")
    b_raw, b = svc.keys.create(name="B", credits=100)
    late = Receiver()
    try:
        with live.client(a_raw) as http_a:
            http_a.post(HOOKS, json=hook_body(receiver.url))
        burst = world.add_followers(HANDLE, 150)                        # 5 pages: a backlog after 2
        cycle(svc)
        with live.client(b_raw) as http_b:
            assert http_b.post(HOOKS, json=hook_body(late.url)).status_code == 201
        spent_subscribing = 100 - svc.keys.balance(b["id"])
        for _ in range(4):
            cycle(svc)
        assert {body["follower"]["id"] for body in receiver.delivered()} == {u.id for u in burst}
        assert late.delivered() == []                                   # all of it predates B's hook
        assert 100 - svc.keys.balance(b["id"]) - spent_subscribing <= 4   # the top page of each poll only
    finally:
        late.close()


def test_a_subscriber_that_pays_part_of_its_catch_up_is_subscribed(live, world, receiver):  # noqa: F811
    svc = live.services
    a_raw, _ = svc.keys.create(name="A")
    with live.client(a_raw) as http_a:
        http_a.post(HOOKS, json=hook_body(receiver.url))
    world.add_followers(HANDLE, 40)                                     # two pages to catch up
    b_raw, b = svc.keys.create(name="B", credits=1)
    with live.client(b_raw) as http_b:
        r = http_b.post(HOOKS, json=hook_body(receiver.url + "?b"))
        assert r.status_code == 201, r.text                             # what it paid for, it got
        assert len(http_b.get(HOOKS).json()["hooks"]) == 1
    assert svc.keys.balance(b["id"]) == 0


def test_enabling_a_hook_leaves_a_delivery_being_sent_alone(live, world, receiver):  # noqa: F811
    svc = live.services
    raw, _ = svc.keys.create()
    with live.client(raw) as http:
        hook = http.post(HOOKS, json=hook_body(receiver.url)).json()
        world.add_followers(HANDLE, 1)
        make_due(svc)
        poll_due_watches(svc)
        now, lease = svc.clock(), svc.settings.delivery_lease
        claim = dict(store=svc.store, lease=lease, limit=10, per_host=8, per_key=8)
        assert len(claim_due_deliveries(now=now, due_before=now, **claim)) == 1   # a sender is sending it
        http.patch(f"{HOOKS}/{hook['id']}", json={"enabled": False})
        assert http.patch(f"{HOOKS}/{hook['id']}", json={"enabled": True}).json()["status"] == "active"
        assert claim_due_deliveries(now=now + 1, due_before=now + 1, **claim) == []   # not a second sender


def test_an_international_target_url_is_stored_as_http_sends_it(live, world, receiver):  # noqa: F811
    svc = live.services
    raw, _ = svc.keys.create()
    with live.client(raw) as http:
        hook = http.post(HOOKS, json=hook_body(receiver.url + "/café?tag=été")).json()
    assert hook["targetUrl"] == receiver.url + "/caf%C3%A9?tag=%C3%A9t%C3%A9"
    world.add_followers(HANDLE, 1)
    cycle(svc)
    assert len(receiver.delivered()) == 1
