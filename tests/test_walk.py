"""``connector followers``: whole-list walks through every provider, progress, resume."""

from __future__ import annotations

import json
import re
import time

import pytest
from click.testing import CliRunner

from connector.cli import followers as walk_module
from connector.cli import main
from connector.config import Settings
from connector.errors import UpstreamError
from connector.providers.base import Provider
from connector.providers.dumpling import DumplingProvider
from connector.records import Page, follower_key
from connector.walk import CSV_FIELDS, walk_list
from tests.fakes import FAKES, FakeDumpling, FakeWorld

PROVIDER_ENV = ("CONNECTOR_PROVIDER", "DUMPLING_API_KEY", "DUMPLING_BASE_URL", "SOCIALFETCH_API_KEY",
                "SOCIALFETCH_BASE_URL", "TIKTOK_CLIENT_KEY", "TIKTOK_CLIENT_SECRET", "TIKTOK_BASE_URL",
                "CONNECTOR_PROVIDER_KEY")
PROGRESS = re.compile(r"(\d[\d,]*)(?: of [\d,]+)? records, (\d[\d,]*) pages")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(walk_module, "PROGRESS_INTERVAL", 0.0)  # draw every page


def run(args, env) -> object:
    return CliRunner().invoke(main, ["followers", *args], env=env, catch_exceptions=False)


def progress_states(stderr: str) -> list[tuple[int, int]]:
    return [(int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))
            for m in PROGRESS.finditer(stderr)]


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def big_world():
    world = FakeWorld(seed=21)
    world.add_account("bigstar", followers=2000, following=35)
    return world


@pytest.mark.parametrize("name", ["dumpling", "socialfetch", "tiktok_research", "demo"])
def test_walk_2000_followers_every_record_once_with_progress(name, big_world, tmp_path, capsys):
    out = tmp_path / "followers.jsonl"
    if name == "demo":
        fake, env, args = None, {"CONNECTOR_PROVIDER": "demo"}, ["bigstar", "--limit", "2000"]
    else:
        fake = FAKES[name](big_world).start()
        env, args = {**fake.env, "CONNECTOR_PROVIDER": name}, ["@BigStar"]
    try:
        started = time.monotonic()
        result = run([*args, "--out", str(out)], env)
        elapsed = time.monotonic() - started
    finally:
        if fake is not None:
            fake.stop()
    assert result.exit_code == 0, result.output
    records = lines(out)
    keys = [follower_key(r) for r in records]
    assert len(records) == 2000 and len(set(keys)) == 2000
    if fake is not None:
        assert [r["user"]["uniqueId"] for r in records] == [u.handle for u, _ in big_world["bigstar"].followers]
    states = progress_states(result.stderr)
    pages = json.loads((tmp_path / "followers.jsonl.cursor").read_text())["pages"]
    assert len(states) >= pages >= 2, "one progress line per page while the walk runs"
    assert states == sorted(states) and states[0][0] < 2000 and states[-1] == (2000, pages)
    credits = {"dumpling": pages, "socialfetch": pages, "tiktok_research": 0, "demo": 0}[name]
    assert f"{pages} pages, {credits} credits" in result.stderr.split("\r")[-1]
    assert "Done: 2,000 records" in result.stderr or "Stopped at --limit: 2,000 records" in result.stderr
    duplicates = int(re.search(r"\(([\d,]+) duplicates dropped\)", result.stderr).group(1).replace(",", ""))
    assert duplicates == 0
    with capsys.disabled():
        print(f"\n  walk via {name}: {len(records):,} records, {pages} pages, {duplicates} duplicates, "
              f"{elapsed:.2f}s")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_interrupted_walk_resumes_from_its_cursor(big_world, tmp_path, fmt):
    out = tmp_path / f"f.{fmt}"
    with FakeDumpling(big_world) as fake:
        env = {**fake.env, "CONNECTOR_PROVIDER": "dumpling", "CONNECTOR_UPSTREAM_DEADLINE": "1"}
        first = run(["bigstar", "--limit", "700", "--format", fmt, "--out", str(out)], env)
        assert first.exit_code == 0 and "Stopped at --limit: 700 records" in first.stderr
        state = json.loads((tmp_path / f"f.{fmt}.cursor").read_text())
        assert state["records"] == 700 and state["done"] is False and state["cursor"] is not None
        # The walk dies mid-page: a torn last line must not survive the resume.
        with out.open("a") as handle:
            handle.write('{"user": {"id": "tor' if fmt == "jsonl" else "123,tor")
        second = run(["bigstar", "--format", fmt, "--out", str(out), "--resume"], env)
        assert second.exit_code == 0, second.output
        third = run(["bigstar", "--format", fmt, "--out", str(out), "--resume"], env)
        assert "already complete (2,000 records)" in third.stderr
    expected = [u.id for u, _ in big_world["bigstar"].followers]
    if fmt == "jsonl":
        ids = [r["user"]["id"] for r in lines(out)]
    else:
        rows = out.read_text().splitlines()
        assert rows[0] == ",".join(CSV_FIELDS) and rows.count(rows[0]) == 1
        ids = [row.split(",")[0] for row in rows[1:]]
    assert ids == expected


def test_failed_walk_says_how_to_resume_and_resume_finishes(big_world, tmp_path):
    out = tmp_path / "f.jsonl"
    with FakeDumpling(big_world) as fake:
        env = {**fake.env, "CONNECTOR_PROVIDER": "dumpling"}
        original = fake.on_followers
        calls = []

        def flaky(request):  # the upstream refuses the key from the 5th page on
            calls.append(1)
            if len(calls) >= 5 and len(calls) < 50:
                return fake.error_response(401, "followers", "API key is invalid or missing.")
            return original(request)

        fake.on_followers = flaky
        failed = run(["bigstar", "--out", str(out)], env)
        assert failed.exit_code == 1
        assert "The dumpling provider refused this server's credentials: check DUMPLING_API_KEY." in failed.stderr
        assert "contact support" not in failed.stderr
        assert "--resume to continue from page 5" in failed.stderr and "Traceback" not in failed.stderr
        assert fake.api_key not in failed.stderr
        assert len(lines(out)) == 4 * 30
        calls.extend([1] * 50)
        resumed = run(["bigstar", "--out", str(out), "--resume"], env)
        assert resumed.exit_code == 0, resumed.output
    assert [r["user"]["id"] for r in lines(out)] == [u.id for u, _ in big_world["bigstar"].followers]


def test_walk_stops_at_the_upstream_depth_cap_and_says_so(tmp_path):
    world = FakeWorld(seed=4, depth_cap=150)
    world.add_account("capped", followers=400)
    for name in ("dumpling", "socialfetch", "tiktok_research"):
        with FAKES[name](world) as fake:
            out = tmp_path / f"{name}.jsonl"
            result = run(["capped", "--out", str(out)], {**fake.env, "CONNECTOR_PROVIDER": name})
            assert result.exit_code == 0, result.output
            assert len(lines(out)) == 150, name
            if name != "tiktok_research":  # the Research API gives no total
                assert "the upstream lists only the newest 150 of 400" in result.stderr


def test_walk_of_an_unlistable_account_is_a_clean_error(tmp_path):
    world = FakeWorld(seed=4)
    world.add_account("shy", followers=3, status="private")
    with FAKES["socialfetch"](world) as fake:
        result = run(["shy", "--following"], {**fake.env, "CONNECTOR_PROVIDER": "socialfetch"})
    assert result.exit_code == 1
    assert "Following list not found for user: shy" in result.stderr and "Traceback" not in result.stderr


def test_walk_with_a_caller_key_and_provider_flags(big_world, tmp_path):
    with FAKES["tiktok_research"](big_world) as fake:
        env = {"TIKTOK_BASE_URL": fake.url}
        good = run(["bigstar", "--following", "--provider", "tiktok_research", "--provider-key",
                    f"{fake.client_key}:{fake.client_secret}", "--format", "csv"], env)
        assert good.exit_code == 0, good.output
        assert len(good.stdout.splitlines()) == 1 + 35
        bad = run(["bigstar", "--provider", "tiktok_research", "--provider-key", "ck_test:wrong_secret_9"], env)
        assert bad.exit_code == 1 and "wrong_secret_9" not in bad.stderr
        assert "rejected the key" in bad.stderr
    nothing = run(["bigstar"], {})
    assert nothing.exit_code == 1 and "No data provider is configured" in nothing.stderr
    assert "--provider demo" in nothing.stderr and "contact support" not in nothing.stderr
    assert run(["not a handle!"], {"CONNECTOR_PROVIDER": "demo"}).exit_code == 2
    assert run(["bigstar", "--resume"], {"CONNECTOR_PROVIDER": "demo"}).exit_code == 2


# -- the walk generator --------------------------------------------------------------------------

def test_walk_retries_a_malformed_page_and_drops_repeats(big_world):
    with FakeDumpling(big_world) as fake:
        provider = DumplingProvider.from_settings(Settings(dumpling_api_key=fake.api_key, dumpling_base_url=fake.url))
        seen, got, slept = set(), [], []
        for n, (page, fresh) in enumerate(walk_list(provider, "bigstar", seen=seen, count=100, sleep=slept.append)):
            got += fresh
            if n == 3:
                fake.fail_next(1, kind="malformed")
                fake.fail_next(1, kind="bad_shape")
        assert len(slept) == 2
        assert [r["user"]["id"] for r in got] == [u.id for u, _ in big_world["bigstar"].followers]
        provider.close()


class LoopingProvider(Provider):
    name, page_credits = "loop", None

    def list_followers(self, handle, *, cursor=None, count=None):
        record = {"user": {"id": str(cursor or 0)}, "stats": {}}
        return Page([record], next_cursor=1 if cursor is None else (2 if cursor == 1 else 1), has_more=True,
                    meta={"creditsCharged": 2})


def test_walk_refuses_a_cursor_that_comes_back():
    stats = walk_module.WalkStats()
    with pytest.raises(UpstreamError) as caught:
        for _ in walk_list(LoopingProvider(), "x", stats=stats):
            pass
    assert "loop detected" in caught.value.detail
    assert stats.pages == 2 and stats.credits == 4
