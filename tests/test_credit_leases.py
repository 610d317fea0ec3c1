"""Credit leases (connector/store/keys.py): processes spend credits from blocks taken from the
balance, and the balance is still never negative, never overspent, and shown truthfully.
Two KeyStores on one database stand for two server processes; the clock is moved, not slept."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from connector.config import Settings
from connector.store import Store
from connector.store.keys import LEASE_GRACE, LEASE_MAX, LEASE_TTL, KeyStore
from tests.clock import ManualClock

FOLLOWERS = "/api/v1/get-tiktok-user-followers"


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def processes(database_url, clock):
    """Two key stores ("processes") on one database, sharing one clock."""
    stores = [Store(database_url), Store(database_url)]
    yield [KeyStore(s, clock=clock) for s in stores]
    for s in stores:
        s.dispose()


def column(keys: KeyStore, key_id: str) -> int:
    """The unleased credits, as stored."""
    import sqlalchemy as sa

    from connector.store.schema import api_keys

    with keys.store.connect() as conn:
        return conn.execute(sa.select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar_one()


def test_spending_from_a_lease_writes_once_per_block_and_balance_stays_exact(processes):
    a, b = processes
    raw, row = a.create(credits=1000)
    caller = a.authenticate(raw)
    assert a.reserve(caller, 1)
    # one block left the stored balance, one credit of it is spent; both views say 999
    assert column(a, row["id"]) == 1000 - LEASE_MAX
    assert a.balance(row["id"]) == 999
    assert b.balance(row["id"]) == 999      # the block's row says what is left of it
    for _ in range(5):
        assert a.reserve(caller, 1)
    assert column(a, row["id"]) == 1000 - LEASE_MAX   # spent from memory
    assert a.balance(row["id"]) == 994


def test_other_processes_see_what_is_left_a_second_late_at_most(processes, clock):
    a, b = processes
    raw, row = a.create(credits=1000)
    caller = a.authenticate(raw)
    for _ in range(4):
        assert a.reserve(caller, 1)
    assert b.balance(row["id"]) == 999      # not yet reported
    clock.advance(1.0)
    assert a.reserve(caller, 1)             # the next spend after a second reports
    assert b.balance(row["id"]) == 995
    assert [k["credits"] for k in b.list()] == [995]


def test_a_key_with_one_credit_left_spends_exactly_it(processes):
    a, b = processes
    raw, row = a.create(credits=1)
    assert a.reserve(a.authenticate(raw), 1)
    assert not a.reserve(a.authenticate(raw), 1)
    assert not b.reserve(b.authenticate(raw), 1)
    assert a.balance(row["id"]) == 0 == b.balance(row["id"])


def test_a_balance_is_spent_to_the_last_credit_by_one_process(processes):
    a, _ = processes
    raw, row = a.create(credits=333)
    caller = a.authenticate(raw)
    assert sum(a.reserve(caller, 1) for _ in range(400)) == 333
    assert a.balance(row["id"]) == 0 and column(a, row["id"]) == 0


def test_two_processes_racing_never_overspend_and_end_at_zero(processes):
    a, b = processes
    raw, row = a.create(credits=500)
    callers = [a.authenticate(raw), b.authenticate(raw)]
    granted = []
    lock = threading.Lock()

    def spend(i):
        keys = processes[i % 2]
        ok = 0
        for _ in range(60):
            ok += keys.reserve(callers[i % 2], 1)
        with lock:
            granted.append(ok)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(spend, range(16)))   # 960 attempts for 500 credits
    # A process may be refused while the other holds the last few credits; those come back
    # on release, and are then spent too. Never more than the balance.
    assert 500 - 2 * LEASE_MAX <= sum(granted) <= 500
    for keys in processes:
        keys.release_credit_leases()
    left = a.balance(row["id"])
    assert left == 500 - sum(granted) == column(a, row["id"])
    assert sum(a.reserve(callers[0], 1) for _ in range(left + 5)) == left
    assert a.balance(row["id"]) == 0


def test_refunds_go_back_to_the_lease_and_release_hands_the_rest_back(processes):
    a, b = processes
    raw, row = a.create(credits=1000)
    caller = a.authenticate(raw)
    assert a.reserve(caller, 2)
    a.refund(caller, 2)                      # the upstream call failed: nothing spent
    assert a.balance(row["id"]) == 1000
    a.release_credit_leases()
    assert column(a, row["id"]) == 1000 and b.balance(row["id"]) == 1000


def test_an_expired_lease_is_not_spent_and_goes_back(processes, clock):
    a, b = processes
    raw, row = a.create(credits=1000)
    caller = a.authenticate(raw)
    assert a.reserve(caller, 1)
    clock.advance(LEASE_TTL + 1)
    assert a.reserve(caller, 1)              # hands the old block back, takes a new one
    assert a.balance(row["id"]) == 998 == b.balance(row["id"])
    assert column(a, row["id"]) == 998 - (LEASE_MAX - 1)


def test_a_dead_holders_lease_is_handed_back_by_another_process(processes, clock):
    a, b = processes
    raw, row = a.create(credits=1000)
    assert a.reserve(a.authenticate(raw), 1)
    a._credit_leases.clear()                 # the process dies without a word
    clock.advance(LEASE_TTL + LEASE_GRACE + 1)
    assert b.reserve(b.authenticate(raw), 1)
    b.release_credit_leases()
    assert column(b, row["id"]) == 998 and b.balance(row["id"]) == 998


def test_top_up_and_revoke_take_effect(processes, clock):
    a, b = processes
    raw, row = a.create(credits=0)
    assert not a.reserve(a.authenticate(raw), 1)
    assert b.top_up(row["id"], 100) == 100
    assert a.reserve(a.authenticate(raw), 1)
    assert b.top_up(row["id"], 10) == 109    # the new balance counts the lease a holds
    assert b.revoke(row["id"])
    clock.advance(1.0)
    assert a.authenticate(raw) is None
    assert [k["credits"] for k in b.list()] == [109]   # what is left is still shown


def test_over_http_each_success_costs_one_credit_and_the_listing_agrees(serve, database_url):
    live = serve(Settings(provider="demo", database_url=database_url, default_rate_limit=1000))
    keys = live.services.keys
    raw, row = keys.create(credits=200)
    http = live.client(raw)
    for _ in range(7):
        assert http.post(FOLLOWERS, json={"handle": "brand"}).status_code == 200
    bad = http.post(FOLLOWERS, json={"handle": "brand", "count": "x"})
    assert bad.status_code == 400
    assert keys.balance(row["id"]) == 193
    assert [k["credits"] for k in keys.list()] == [193]
    live.services.close()                    # shutting down hands the block back
    other = KeyStore(Store(database_url))
    assert column(other, row["id"]) == 193 == other.balance(row["id"])
    other.store.dispose()


def test_a_key_revoked_by_another_process_is_refused_within_a_second(processes, clock):
    a, b = processes
    raw, row = a.create(credits=10)
    assert a.authenticate(raw) is not None
    assert b.revoke(row["id"])
    assert b.authenticate(raw) is None        # the revoking process at once
    clock.advance(1.0)
    assert a.authenticate(raw) is None        # the others within AUTH_CACHE_SECONDS
