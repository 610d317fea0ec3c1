"""Settings: every variable is read once into typed fields, and a bad value names its variable."""

from __future__ import annotations

import dataclasses
import re
import os
import subprocess
import sys

import pytest

from pathlib import Path

from connector.config import (DAY, DEFAULT_RETRY_SCHEDULE, URL, ConfigError, DatabaseURL, Days, Flag, Folder, Number,
                              OneOf, SecondsList, Settings, Whole, WorkerSettings, Words, declarations,
                              field_declarations)


def _other_value(declared) -> tuple[str, object]:
    """A valid value for ``declared`` that is not its default, and the field value it becomes."""
    kind = declared.kind
    if isinstance(kind, Days):
        return str(kind.minimum + 2), (kind.minimum + 2) * DAY
    if isinstance(kind, (Whole, Number)):
        value = int(kind.minimum) + (3 if int(kind.minimum) + 3 != declared.default else 4)
        return str(value), value
    if isinstance(kind, Flag):
        return "on", True
    if isinstance(kind, OneOf):
        choice = next(c for c in kind.allowed() if c != declared.default)
        swapped = choice.swapcase() if kind.fold else choice     # a folded variable is read in either case
        return swapped, choice
    if isinstance(kind, SecondsList):
        return "5, 60,600", (5, 60, 600)
    if isinstance(kind, Words):
        return "k1, k2", ("k1", "k2")
    if isinstance(kind, Folder):
        return "/srv/manifests", Path("/srv/manifests")
    if isinstance(kind, URL):
        return "https://upstream.example/", "https://upstream.example"
    if isinstance(kind, DatabaseURL):
        return "sqlite:////srv/c.db", "sqlite:////srv/c.db"
    text = "v" * max(getattr(kind, "min_length", 0), 8)
    return f"  {text} ", text


def test_every_variable_lands_in_a_typed_field():
    env, expected = {}, {}
    for declared in declarations():
        env[declared.env], expected[declared.env] = _other_value(declared)
    env["CONNECTOR_RETENTION_DAYS"] = "30"; expected["CONNECTOR_RETENTION_DAYS"] = 30 * DAY   # above the horizon
    settings = Settings.from_env(env)
    worker = field_declarations(WorkerSettings)
    for declared in declarations():
        value = getattr(settings.worker if declared in worker else settings, declared.attr)
        assert value == expected[declared.env] and value != declared.default, declared.env
    assert settings.worker == dataclasses.replace(WorkerSettings(), page_budget=4, lease_seconds=4.0, poll_threads=4,
                                                  delivery_concurrency=4, idle_sleep=3.0)
    assert settings.retention_seconds == 30 * DAY and settings.hook_disable_after == 2.01 * DAY


def test_every_variable_of_the_contract_is_declared_once():
    names = [s.env for s in declarations()]
    attrs = [s.attr for s in declarations()]
    assert len(set(names)) == len(names) and len(set(attrs)) == len(attrs)
    assert {"CONNECTOR_PROVIDER", "DUMPLING_API_KEY", "DUMPLING_BASE_URL", "SOCIALFETCH_API_KEY",
            "SOCIALFETCH_BASE_URL", "TIKTOK_CLIENT_KEY", "TIKTOK_CLIENT_SECRET", "TIKTOK_BASE_URL",
            "CONNECTOR_DATABASE_URL", "CONNECTOR_API_KEYS", "CONNECTOR_SECRET_KEY", "CONNECTOR_ALLOW_PRIVATE_TARGETS",
            "CONNECTOR_POLL_INTERVAL", "CONNECTOR_WEBHOOK_RETRY_SCHEDULE"} <= set(names)
    secret = {s.env for s in declarations() if s.secret}
    assert {"DUMPLING_API_KEY", "TIKTOK_CLIENT_SECRET", "CONNECTOR_SECRET_KEY", "CONNECTOR_ADMIN_KEY"} <= secret


def test_the_default_retry_schedule_is_what_its_comment_says():
    assert len(DEFAULT_RETRY_SCHEDULE) + 1 == 14                     # the first attempt and 13 retries
    assert sum(DEFAULT_RETRY_SCHEDULE) == 297_750 and round(sum(DEFAULT_RETRY_SCHEDULE) / 3600) == 83
    assert sum(DEFAULT_RETRY_SCHEDULE) >= 72 * 3600                  # the contract's "at least 72 hours"


@pytest.mark.parametrize("name, value, fragment", [
    ("CONNECTOR_POLL_THREADS", "many", "CONNECTOR_POLL_THREADS must be a whole number"),
    ("CONNECTOR_POLL_THREADS", "٣", "written with the digits 0-9"),
    ("CONNECTOR_POLL_THREADS", "10.5", "CONNECTOR_POLL_THREADS must be a whole number"),
    ("CONNECTOR_POLL_IDLE_SLEEP", "nan", "CONNECTOR_POLL_IDLE_SLEEP must be a finite number"),
    ("CONNECTOR_UPSTREAM_DEADLINE", "inf", "CONNECTOR_UPSTREAM_DEADLINE must be a finite number"),
    ("CONNECTOR_ALLOW_PRIVATE_TARGETS", "sure", "CONNECTOR_ALLOW_PRIVATE_TARGETS must be 1 (on) or 0 (off)"),
    ("CONNECTOR_POLL_PAGE_BUDGET", "0", "CONNECTOR_POLL_PAGE_BUDGET must be at least 1"),
    ("CONNECTOR_DELIVERY_TIMEOUT", "0.5", "CONNECTOR_DELIVERY_TIMEOUT must be at least 1"),
    ("CONNECTOR_LOG_LEVEL", "LOUD", "CONNECTOR_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
    ("CONNECTOR_RETENTION_DAYS", "2", "CONNECTOR_RETENTION_DAYS must be at least the webhook retry horizon"),
])
def test_a_bad_value_names_its_variable(name, value, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        Settings.from_env({name: value})


def test_the_worker_refuses_a_bad_value_in_words():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env.update(CONNECTOR_PROVIDER="demo", CONNECTOR_POLL_THREADS="lots")
    done = subprocess.run([sys.executable, "-m", "connector.cli", "poll", "--once"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "CONNECTOR_POLL_THREADS must be a whole number written with the digits 0-9, got 'lots'" in done.stderr
    assert "Traceback" not in done.stderr
