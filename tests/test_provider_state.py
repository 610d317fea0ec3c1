"""Paging state lives in the cursor, and the provider pool never pulls a provider from under
its user: what gunicorn's several workers and the pool's evictions must not break."""

from __future__ import annotations

import base64
import gc
import json
import threading

import pytest

from connector.config import Settings
from connector.providers import ProviderPool
from tests.paging import iter_pages
from connector.providers.tiktok_research import TikTokResearchProvider
from connector.trigger.detect import walk
from tests.fakes import FakeTikTokResearch, FakeWorld

FOLLOWERS = "/api/v1/get-tiktok-user-followers"
FAST = dict(upstream_max_attempts=2, upstream_backoff_base=0.01, upstream_backoff_cap=0.02, upstream_deadline=3.0)


@pytest.fixture
def world():
    world = FakeWorld(seed=8)
    world.add_account("alice", followers=230)
    return world


def research_settings(fake: FakeTikTokResearch, **overrides) -> dict:
    return {**FAST, "tiktok_client_key": fake.client_key, "tiktok_client_secret": fake.client_secret,
            "tiktok_base_url": fake.url, **overrides}


def refuses_mintime(message: str) -> bool:
    """Whether an error tells the caller to send back a previous page's minCursor as minTime."""
    return message.startswith("'minTime'") and "minCursor" in message


def test_pages_alternating_between_workers_give_every_follower_once(serve, make_settings, world):
    # inclusive_cursor: each page starts with the last follower of the one before, the
    # overlap only the cursor's memory of that page boundary can drop.
    with FakeTikTokResearch(world, inclusive_cursor=True) as fake:
        workers = [serve(make_settings(**research_settings(fake))) for _ in range(2)]  # two pools, one database
        raw, _ = workers[0].services.keys.create(name="zap")
        clients = [worker.client(raw, headers={"X-Provider": "tiktok_research"}) for worker in workers]
        handles, cursor = [], None
        for page in range(100):
            body = {"handle": "alice", "count": 25, **({"minTime": cursor} if cursor is not None else {})}
            r = clients[page % 2].post(FOLLOWERS, json=body)
            assert r.status_code == 200, r.text
            handles += [record["user"]["uniqueId"] for record in r.json()["followers"]]
            if not r.json()["hasMore"]:
                break
            cursor = r.json()["minCursor"]
            assert len(str(cursor)) <= 512, "fits minTime"
        for client in clients:
            client.close()
    assert page >= 9, "the walk took turns over many pages"
    assert handles == [user.handle for user, _ in world["alice"].followers]


def test_a_trigger_gap_stored_by_one_worker_is_read_by_another_without_repeats(world):
    with FakeTikTokResearch(world, inclusive_cursor=True) as fake:
        settings = Settings(**research_settings(fake))
        first, second = (TikTokResearchProvider.from_settings(settings) for _ in range(2))
        top = walk(lambda cursor: first.list_followers("alice", cursor=cursor, count=40), lambda keys: set(),
                   max_pages=2)
        gap = json.loads(json.dumps([{"cursor": top.cursor}]))  # how a watch keeps it (list_state)
        rest = walk(lambda cursor: second.list_followers("alice", cursor=cursor, count=40), lambda keys: set(),
                    start=gap[0]["cursor"], max_pages=100)
        first.close()
        second.close()
    assert top.reason == "budget" and rest.reason == "end"
    handles = [record["user"]["uniqueId"] for _, record in top.new + rest.new]
    assert handles == [user.handle for user, _ in world["alice"].followers]


def test_a_cursor_this_provider_did_not_return_is_a_400_naming_mintime(serve, make_settings, world):
    with FakeTikTokResearch(world) as fake:
        live = serve(make_settings(**research_settings(fake)))
        raw, row = live.services.keys.create(name="zap", credits=10)
        with live.client(raw, headers={"X-Provider": "tiktok_research"}) as http:
            r = http.post(FOLLOWERS, json={"handle": "alice", "minTime": "not-a-cursor"})
            assert r.status_code == 400 and refuses_mintime(r.json()["error"]), r.text
            cursor = http.post(FOLLOWERS, json={"handle": "alice", "count": 10}).json()["minCursor"]
            tampered = [
                cursor[:-6],                                      # cut short
                "tr9." + cursor[4:],                              # a version we never wrote
                cursor[:12] + "!" + cursor[13:],                  # a character outside base64url
                "tr1." + base64.urlsafe_b64encode(b'{"t":"soon","b":[]}').decode(),
            ]
            for bad in tampered:
                r = http.post(FOLLOWERS, json={"handle": "alice", "minTime": bad})
                assert r.status_code == 400 and refuses_mintime(r.json()["error"]), (bad, r.text)
            assert live.services.keys.balance(row["id"]) == 9, "refused cursors cost nothing"
            # Bare seconds, what this provider returned before (watches may have stored one), still page.
            r = http.post(FOLLOWERS, json={"handle": "alice", "minTime": world["alice"].followers[10][1]})
            assert r.status_code == 200
            assert r.json()["followers"][0]["user"]["uniqueId"] == world["alice"].followers[10][0].handle
            assert http.post(FOLLOWERS, json={"handle": "alice", "minTime": cursor}).status_code == 200


def test_evicting_a_provider_in_use_leaves_it_working_and_keeps_the_operators(world):
    with FakeTikTokResearch(world) as fake:
        pool = ProviderPool(Settings(**research_settings(fake)), max_cached=2)
        operator = pool.get("tiktok_research")
        in_use = pool.get("tiktok_research", f"{fake.client_key}:{fake.client_secret}")
        client = in_use.http.client
        first_page, evicted = threading.Event(), threading.Event()
        handles, errors = [], []

        def read_all(provider):
            try:
                for page in iter_pages(lambda cursor: provider.list_followers("alice", cursor=cursor, count=50)):
                    handles.extend(record["user"]["uniqueId"] for record in page.records)
                    first_page.set()
                    evicted.wait(5)  # the pool evicts this provider between its first pages
            except Exception as exc:  # reported by the assertion below
                errors.append(exc)
                first_page.set()

        reader = threading.Thread(target=read_all, args=(in_use,))
        del in_use  # from here on, only the reading thread holds it
        reader.start()
        assert first_page.wait(5)
        for n in range(3):  # more callers' keys than the pool keeps
            pool.get("tiktok_research", f"ck_other{n}:cs_other{n}")
        assert not client.is_closed, "evicted while in use, but not closed under its user"
        evicted.set()
        reader.join(10)
        assert errors == [] and handles == [user.handle for user, _ in world["alice"].followers]

        del reader
        gc.collect()
        assert client.is_closed, "once its last user let go, its connections are released"
        assert pool.get("tiktok_research") is operator, "the operator's provider is never evicted"
        assert len(operator.list_followers("alice", count=5).records) == 5
        pool.close()
