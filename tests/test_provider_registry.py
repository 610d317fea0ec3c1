"""A provider describes itself: registering a class defined here (its settings, credentials and
operations) is enough for the service, ``connector check`` and the settings table to use it,
with no other file touched."""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner

from connector import providers
from connector.cli import main
from connector.config import URL, ConfigError, Setting, Settings, declarations, settings_table
from connector.errors import UpstreamError
from connector.providers.base import Provider
from connector.records import Page, profile_record, user_record


class EchoProvider(Provider):
    """An upstream that knows every account: ``n`` followers named ``<handle>_fan<i>``."""

    name = "echo"
    cursor_form = "a whole number"
    own_settings = (
        Setting("ECHO_APP_ID", help="Echo application id", secret=True, credential=True),
        Setting("ECHO_APP_SECRET", help="Echo application secret", secret=True, credential=True),
        Setting("ECHO_BASE_URL", "https://echo.invalid", "Echo base URL", URL()),
    )
    credential_form = "app_id:app_secret"
    unsupported = {"list_following": "Echo does not list whom an account follows"}

    def __init__(self, app_id: str, app_secret: str, base_url: str):
        self.app_id, self.app_secret, self.base_url = app_id, app_secret, base_url

    @classmethod
    def from_settings(cls, settings: Settings, credentials: str | None = None) -> "EchoProvider":
        if credentials:
            app_id, _, app_secret = credentials.partition(":")
            if app_secret != "s3cret":
                raise UpstreamError("provider_key_rejected", "echo refused the caller's secret", provider=cls.name)
            return cls(app_id, app_secret, settings.echo_base_url)
        cls.require_credentials(settings)
        return cls(settings.echo_app_id, settings.echo_app_secret, settings.echo_base_url)

    def secrets(self) -> tuple[str, ...]:
        return (self.app_secret,)

    def get_profile(self, handle: str, *, request_source: str = "API") -> dict:
        return profile_record({"uniqueId": handle, "nickname": f"{handle} via {self.base_url}"},
                              {"followerCount": 3})

    def list_followers(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        records = [user_record({"id": f"{handle}-{i}", "uniqueId": f"{handle}_fan{i}"}, {"followerCount": i})
                   for i in range(3)]
        return Page(records=records, has_more=False, total=3)


@pytest.fixture
def echo(monkeypatch):
    """EchoProvider registered, as its one registry line would do."""
    monkeypatch.setitem(providers.PROVIDERS, EchoProvider.name, EchoProvider)
    return EchoProvider


def test_its_settings_are_read_declared_and_tabled(echo):
    settings = Settings.from_env({"ECHO_APP_ID": "app_1", "ECHO_APP_SECRET": "s3cret",
                                  "ECHO_BASE_URL": "https://echo.example/"})
    assert (settings.echo_app_id, settings.echo_base_url) == ("app_1", "https://echo.example")
    assert settings.has_credentials("echo") and settings.default_provider == "echo"
    assert Settings().echo_base_url == "https://echo.invalid"        # its declared default
    assert not Settings().has_credentials("echo") and Settings().default_provider is None
    assert Settings(echo_app_id="a").replace(poll_interval=9).echo_app_id == "a"
    assert {"ECHO_APP_ID", "ECHO_APP_SECRET", "ECHO_BASE_URL"} <= {s.env for s in declarations()}
    assert "| `ECHO_APP_SECRET` | Echo application secret | text, secret | — |" in settings_table()
    with pytest.raises(ConfigError, match="CONNECTOR_PROVIDER must be one of dumpling, socialfetch, "
                                        "tiktok_research, demo, echo, got 'ech'"):
        Settings.from_env({"CONNECTOR_PROVIDER": "ech"})


def test_without_registration_its_settings_are_unknown():
    with pytest.raises(TypeError, match="echo_app_id"):
        Settings(echo_app_id="a")
    assert "ECHO_APP_ID" not in settings_table()


def test_the_service_serves_it_by_default_and_by_name(echo, serve, make_settings):
    live = serve(make_settings(provider=None, echo_app_id="app_1", echo_app_secret="op_secret",
                               secret_key="k" * 32))
    raw, _ = live.services.keys.create(name="tests")
    with live.client(raw) as http:
        r = http.post("/api/v1/get-tiktok-profile", json={"handle": "@brand"})
        assert r.status_code == 200 and r.json()["user"]["nickname"] == "brand via https://echo.invalid"
        r = http.post("/api/v1/get-tiktok-user-followers", json={"handle": "brand"},
                      headers={"X-Provider": "echo", "X-Provider-Key": "caller:s3cret"})
        assert r.status_code == 200
        assert [f["user"]["uniqueId"] for f in r.json()["followers"]] == ["brand_fan0", "brand_fan1", "brand_fan2"]
        r = http.post("/api/v1/get-tiktok-user-following", json={"handle": "brand"})
        assert r.status_code == 400 and "Echo does not list whom an account follows" in r.json()["error"]


def test_a_caller_is_told_its_key_form(echo, serve, make_settings):
    live = serve(make_settings(provider="demo"))
    raw, _ = live.services.keys.create(name="tests")
    with live.client(raw) as http:
        r = http.post("/api/v1/get-tiktok-profile", json={"handle": "brand"}, headers={"X-Provider": "echo"})
    assert r.status_code == 500 and "(app_id:app_secret)" in r.json()["error"]


def _check(env: dict[str, str]) -> str:
    unset = {s.env: None for s in declarations()}
    result = CliRunner().invoke(main, ["check"], env={**unset, **env})
    return result.output


def test_connector_check_lists_and_calls_it(echo, sqlite_url):
    out = _check({"ECHO_APP_ID": "app_1", "ECHO_APP_SECRET": "op_s3cret_value", "CONNECTOR_DATABASE_URL": sqlite_url})
    assert "op_s3cret_value" not in out
    assert re.search(r"ECHO_APP_SECRET\s+set\n", out) and re.search(r"ECHO_BASE_URL\s+https://echo.invalid \(default\)", out)
    assert re.search(r"echo \(default\): answers \(\d+ ms\)", out) and out.rstrip().endswith("All good.")


def test_connector_check_names_its_variables_when_nothing_is_configured(echo, sqlite_url):
    out = _check({"CONNECTOR_DATABASE_URL": sqlite_url})
    assert "set DUMPLING_API_KEY, SOCIALFETCH_API_KEY, TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET or " \
           "ECHO_APP_ID and ECHO_APP_SECRET (or CONNECTOR_PROVIDER)" in out
