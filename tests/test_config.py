"""Settings: every variable is read once into typed fields, and a bad value names its variable."""

from __future__ import annotations

import dataclasses
import re
import os
import subprocess
import sys

import pytest

from connector.config import DAY, ConfigError, Settings, WorkerSettings


def test_every_variable_lands_in_a_typed_field():
    settings = Settings.from_env({
        "CONNECTOR_POLL_PAGE_BUDGET": "4", "CONNECTOR_POLL_LEASE_SECONDS": "30", "CONNECTOR_POLL_THREADS": "3",
        "CONNECTOR_DELIVERY_CONCURRENCY": "5", "CONNECTOR_POLL_IDLE_SLEEP": "0.5", "CONNECTOR_LOG_LEVEL": "warning",
        "CONNECTOR_MAX_HOOKS_PER_KEY": "7", "CONNECTOR_MAX_HANDLES_PER_KEY": "3", "CONNECTOR_DELIVERY_TIMEOUT": "9",
        "CONNECTOR_DELIVERY_PER_HOST": "2", "CONNECTOR_DELIVERY_PER_KEY": "6",
        "CONNECTOR_HOOK_DISABLE_AFTER_DAYS": "2", "CONNECTOR_RETENTION_DAYS": "30",
        "CONNECTOR_POLL_SUBSCRIPTION_TTL_DAYS": "10", "CONNECTOR_MANIFESTS_DIR": "/srv/manifests",
        "CONNECTOR_ALLOW_PRIVATE_TARGETS": "on", "CONNECTOR_PROVIDER_KEY": "ck:cs"})
    assert settings.worker == dataclasses.replace(WorkerSettings(), page_budget=4, lease_seconds=30.0, poll_threads=3,
                                                  delivery_concurrency=5, idle_sleep=0.5)
    assert settings.log_level == "WARNING" and str(settings.manifests_dir) == "/srv/manifests"
    assert (settings.max_hooks_per_key, settings.max_handles_per_key, settings.delivery_timeout) == (7, 3, 9.0)
    assert (settings.delivery_per_host, settings.delivery_per_key) == (2, 6)
    assert settings.hook_disable_after == 2 * DAY and settings.retention_seconds == 30 * DAY
    assert settings.poll_subscription_ttl == 10 * DAY
    assert settings.allow_private_targets is True and settings.provider_key == "ck:cs"


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
