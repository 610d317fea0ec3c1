"""Settings read from the environment once, then passed around explicitly.

Every variable is a typed field of :class:`Settings` (the worker's in :class:`WorkerSettings`),
read and checked in :meth:`Settings.from_env`, whose errors name the variable; nothing reads
``os.environ`` after it. Tests build a ``Settings`` directly (or through
``create_app(test_config=...)``). The README's Configuration table lists them all.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
import time
from pathlib import Path
from typing import Callable, Mapping

PROVIDER_NAMES = ("dumpling", "socialfetch", "tiktok_research", "demo")
# Default provider: the first of these that has credentials (contract section 2).
CREDENTIALED_PROVIDERS = ("dumpling", "socialfetch", "tiktok_research")

# 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h: 24 attempts over ~77 h.
DEFAULT_RETRY_SCHEDULE = (30, 120, 600, 1800, 3600, 10800, 21600) + (43200,) * 6

DAY = 86400.0


def _manifests_dir() -> Path:
    """The manifests folder: the copy a regular install ships inside the package
    (``connector/_manifests``, see setup.py), else ``manifests/`` beside the package in a source
    checkout or editable install, where developers edit them (edits apply without reinstalling)."""
    package = Path(__file__).resolve().parent
    shipped = package / "_manifests"
    return shipped if shipped.is_dir() else package.parent / "manifests"


MANIFESTS_DIR = _manifests_dir()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MIN_ADMIN_KEY = 16   # characters of CONNECTOR_ADMIN_KEY: the console's one secret


@dataclass(frozen=True)
class WorkerSettings:
    """The worker's knobs (``connector poll``), also read by polls made inside requests."""

    page_budget: int = 10          # upstream pages one poll may read (the rest waits for the next poll)
    request_page_budget: int = 2   # pages a poll made inside an HTTP request may read (Zapier waits 30 s)
    frontier_run: int = 3          # consecutive seen followers that mark the known frontier
    lease_seconds: float = 120.0   # how long a poller owns a watch before another may take it over
    poll_threads: int = 32         # watches polled at once by one worker (200+ polls/s at 100 ms upstream)
    delivery_threads: int = 64     # webhooks sent at once by one worker (threads mostly wait on sockets)
    claim_batch: int = 200
    idle_sleep: float = 0.25       # seconds the worker rests between passes (bounds commit-to-delivery latency)
    prune_every: float = 600.0     # seconds between two retention passes
    prune_batch: int = 500         # rows one retention statement deletes (short transactions)


class ConfigError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    provider: str | None = None
    dumpling_api_key: str | None = None
    dumpling_base_url: str = "https://app.dumplingai.com"
    socialfetch_api_key: str | None = None
    socialfetch_base_url: str = "https://api.socialfetch.dev"
    tiktok_client_key: str | None = None
    tiktok_client_secret: str | None = None
    tiktok_base_url: str = "https://open.tiktokapis.com"
    database_url: str | None = None
    api_keys: tuple[str, ...] = ()
    secret_key: str | None = None
    allow_private_targets: bool = False
    poll_interval: int = 300
    webhook_retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    default_rate_limit: int = 120
    max_body_bytes: int = 64 * 1024
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 20.0
    upstream_deadline: float = 25.0
    upstream_max_attempts: int = 3
    upstream_backoff_base: float = 0.25  # seconds; retries wait up to base * 2**attempt (full jitter)
    upstream_backoff_cap: float = 4.0
    # Tenancy limits and delivery safety (README "Limits per key" and "Webhooks").
    max_hooks_per_key: int = 100            # hooks one caller key may hold
    max_handles_per_key: int = 50           # distinct watched accounts per key (hooks and polling)
    delivery_timeout: float = 15.0          # one webhook attempt, DNS to last byte read
    delivery_max_response_bytes: int = 64 * 1024
    delivery_per_host: int = 8              # attempts at once to one receiver host, per worker
    delivery_per_key: int = 16              # attempts at once for one key's hooks, per worker
    max_requests_in_flight_per_key: int = 4  # one key's requests answered at once, per web process
    hook_disable_after: float = 5 * DAY     # failing this long without a success disables a hook
    retention: float | None = None          # events, deliveries, attempts; None: see retention_seconds
    poll_subscription_ttl: float = 30 * DAY  # a polling subscription nobody calls expires after this
    manifests_dir: Path = MANIFESTS_DIR
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    log_level: str = "INFO"
    provider_key: str | None = None          # `connector followers`' provider key when --provider-key is not given
    metrics_token: str | None = None         # GET /metrics needs it as a bearer token; None: loopback only
    admin_key: str | None = None             # opens the operator console (/console/); None: the console is off
    clock: Callable[[], float] = time.time   # unix seconds; tests pass one they move

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def retry_horizon(self) -> float:
        """Seconds from a delivery's first attempt to its last, at the most (jitter +20 %)."""
        return sum(self.webhook_retry_schedule) * 1.2

    @property
    def retention_seconds(self) -> float:
        """How long events, deliveries and attempts are kept: by default the retry horizon
        plus 7 days, so nothing is pruned while it may still be retried."""
        return self.retention if self.retention is not None else self.retry_horizon + 7 * DAY

    def has_credentials(self, provider: str) -> bool:
        if provider == "dumpling":
            return bool(self.dumpling_api_key)
        if provider == "socialfetch":
            return bool(self.socialfetch_api_key)
        if provider == "tiktok_research":
            return bool(self.tiktok_client_key and self.tiktok_client_secret)
        return provider == "demo"

    @property
    def default_provider(self) -> str | None:
        """The provider used when a request names none, or None when nothing is configured."""
        if self.provider:
            return self.provider
        for name in CREDENTIALED_PROVIDERS:
            if self.has_credentials(name):
                return name
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default, kind=int, minimum=0):
            raw = text(name)
            if raw is None:
                return default
            what = "a whole number" if kind is int else "a number"
            try:
                if not raw.isascii():   # int() and float() take other scripts' digits ("٣")
                    raise ValueError
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name} must be {what} written with the digits 0-9, got {raw!r}.") from None
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {raw!r}.")
            if value < minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}.")
            return value

        def flag(name: str) -> bool:
            raw = (text(name) or "").lower()
            if raw in ("", "0", "false", "no", "off"):
                return False
            if raw in ("1", "true", "yes", "on"):
                return True
            raise ConfigError(f"{name} must be 1 (on) or 0 (off), got {text(name)!r}.")

        provider = text("CONNECTOR_PROVIDER")
        if provider is not None and provider not in PROVIDER_NAMES:
            raise ConfigError(
                f"CONNECTOR_PROVIDER must be one of {', '.join(PROVIDER_NAMES)}, got {provider!r}."
            )
        schedule = DEFAULT_RETRY_SCHEDULE
        raw_schedule = text("CONNECTOR_WEBHOOK_RETRY_SCHEDULE")
        if raw_schedule is not None:
            try:
                schedule = tuple(int(part) for part in raw_schedule.split(",") if part.strip())
            except ValueError:
                schedule = ()
            if not schedule or min(schedule) < 0:
                raise ConfigError(
                    "CONNECTOR_WEBHOOK_RETRY_SCHEDULE must be comma-separated whole seconds, "
                    f"e.g. 30,120,600; got {raw_schedule!r}."
                )
        log_level = (text("CONNECTOR_LOG_LEVEL") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"CONNECTOR_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}.")
        defaults = WorkerSettings()
        worker = WorkerSettings(
            page_budget=number("CONNECTOR_POLL_PAGE_BUDGET", defaults.page_budget, minimum=1),
            lease_seconds=number("CONNECTOR_POLL_LEASE_SECONDS", defaults.lease_seconds, kind=float, minimum=1),
            poll_threads=number("CONNECTOR_POLL_THREADS", defaults.poll_threads, minimum=1),
            delivery_threads=number("CONNECTOR_DELIVERY_THREADS", defaults.delivery_threads, minimum=1),
            idle_sleep=number("CONNECTOR_POLL_IDLE_SLEEP", defaults.idle_sleep, kind=float, minimum=0.01))
        retention = number("CONNECTOR_RETENTION_DAYS", None, kind=float, minimum=1)
        if retention is not None:
            horizon_days = sum(schedule) * 1.2 / DAY
            if retention < horizon_days:
                raise ConfigError(
                    f"CONNECTOR_RETENTION_DAYS must be at least the webhook retry horizon "
                    f"({horizon_days:.1f} days with CONNECTOR_WEBHOOK_RETRY_SCHEDULE), got {retention:g}; "
                    "otherwise deliveries still being retried would be pruned.")
            retention *= DAY
        admin_key = text("CONNECTOR_ADMIN_KEY")
        if admin_key is not None and len(admin_key) < MIN_ADMIN_KEY:
            raise ConfigError(f"CONNECTOR_ADMIN_KEY must be at least {MIN_ADMIN_KEY} characters (it opens the "
                              "operator console); make one with: python -c 'import secrets; "
                              "print(secrets.token_urlsafe(32))'.")
        api_keys = tuple(k.strip() for k in (text("CONNECTOR_API_KEYS") or "").split(",") if k.strip())
        return cls(
            provider=provider,
            dumpling_api_key=text("DUMPLING_API_KEY"),
            dumpling_base_url=(text("DUMPLING_BASE_URL") or cls.dumpling_base_url).rstrip("/"),
            socialfetch_api_key=text("SOCIALFETCH_API_KEY"),
            socialfetch_base_url=(text("SOCIALFETCH_BASE_URL") or cls.socialfetch_base_url).rstrip("/"),
            tiktok_client_key=text("TIKTOK_CLIENT_KEY"),
            tiktok_client_secret=text("TIKTOK_CLIENT_SECRET"),
            tiktok_base_url=(text("TIKTOK_BASE_URL") or cls.tiktok_base_url).rstrip("/"),
            database_url=text("CONNECTOR_DATABASE_URL"),
            api_keys=api_keys,
            secret_key=text("CONNECTOR_SECRET_KEY"),
            allow_private_targets=flag("CONNECTOR_ALLOW_PRIVATE_TARGETS"),
            poll_interval=number("CONNECTOR_POLL_INTERVAL", 300, minimum=1),
            webhook_retry_schedule=schedule,
            default_rate_limit=number("CONNECTOR_DEFAULT_RATE_LIMIT", 120, minimum=1),
            max_body_bytes=number("CONNECTOR_MAX_BODY_BYTES", 64 * 1024, minimum=1024),
            upstream_deadline=number("CONNECTOR_UPSTREAM_DEADLINE", 25.0, kind=float, minimum=1),
            max_hooks_per_key=number("CONNECTOR_MAX_HOOKS_PER_KEY", 100, minimum=1),
            max_handles_per_key=number("CONNECTOR_MAX_HANDLES_PER_KEY", 50, minimum=1),
            delivery_timeout=number("CONNECTOR_DELIVERY_TIMEOUT", 15.0, kind=float, minimum=1),
            delivery_per_host=number("CONNECTOR_DELIVERY_PER_HOST", 8, minimum=1),
            delivery_per_key=number("CONNECTOR_DELIVERY_PER_KEY", 16, minimum=1),
            max_requests_in_flight_per_key=number("CONNECTOR_MAX_REQUESTS_IN_FLIGHT_PER_KEY", 4, minimum=1),
            hook_disable_after=number("CONNECTOR_HOOK_DISABLE_AFTER_DAYS", 5.0, kind=float, minimum=0.01) * DAY,
            retention=retention,
            poll_subscription_ttl=number("CONNECTOR_POLL_SUBSCRIPTION_TTL_DAYS", 30.0, kind=float,
                                         minimum=1) * DAY,
            worker=worker,
            log_level=log_level,
            manifests_dir=Path(text("CONNECTOR_MANIFESTS_DIR") or MANIFESTS_DIR),
            provider_key=text("CONNECTOR_PROVIDER_KEY"),
            metrics_token=text("CONNECTOR_METRICS_TOKEN"),
            admin_key=admin_key,
        )
