"""Settings: each one declared once, read from the environment once, then passed around.

A setting is one declaration: a field of :class:`Settings` (or :class:`WorkerSettings`) made
by :func:`setting`, naming its environment variable, its kind (type and bounds), its default,
whether it is secret and a one-line help. :meth:`Settings.from_env` and its errors,
``connector check``'s listing and the settings table in ``docs/architecture.md``
(:func:`settings_table`) all come from these declarations. A provider declares its own
settings in its module (``Provider.own_settings``, :class:`Setting` with ``attr``); they are read
the same way and reached the same way, ``settings.dumpling_api_key``.

To add a setting: one line in :class:`Settings`, e.g.
``poll_interval: int = setting("CONNECTOR_POLL_INTERVAL", 300, "seconds between two polls of one
watch", Whole(1))``, then regenerate the docs table (``python -m connector.config``).
Nothing reads ``os.environ`` after ``from_env``; tests build a ``Settings`` directly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

DAY = 86400.0

# 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, then 12 h six times: 13 retries, so 14 attempts
# over about 83 h (297,750 s; tests/test_config.py holds these figures).
DEFAULT_RETRY_SCHEDULE = (30, 120, 600, 1800, 3600, 10800, 21600) + (43200,) * 6


def _manifests_dir() -> Path:
    """The manifests folder: the copy a regular install ships inside the package
    (``connector/_manifests``, see setup.py), else ``manifests/`` beside the package in a source
    checkout or editable install, where developers edit them (edits apply without reinstalling)."""
    package = Path(__file__).resolve().parent
    shipped = package / "_manifests"
    return shipped if shipped.is_dir() else package.parent / "manifests"


MANIFESTS_DIR = _manifests_dir()

POLL_POLICIES = ("adaptive", "fixed")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MIN_ADMIN_KEY = 16   # characters of CONNECTOR_ADMIN_KEY: the console's one secret


class ConfigError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


# -- kinds: how a variable's text becomes a value, and the error when it cannot --------------

class Kind:
    """Text as given (stripped; empty means unset)."""

    words = "text"

    def parse(self, name: str, raw: str) -> Any:
        return raw

    def show(self, value: Any) -> str:
        return str(value)


TEXT = Kind()


class URL(Kind):
    words = "URL"

    def parse(self, name: str, raw: str) -> str:
        return raw.rstrip("/")


@dataclass(frozen=True)
class Secret(Kind):
    """Text of at least ``min_length`` characters; ``advice`` follows the error's first words."""

    min_length: int = 0
    advice: str = "."
    words = "text"

    def parse(self, name: str, raw: str) -> str:
        if len(raw) < self.min_length:
            raise ConfigError(f"{name} must be at least {self.min_length} characters{self.advice}")
        return raw


@dataclass(frozen=True)
class Whole(Kind):
    minimum: int = 0

    @property
    def words(self) -> str:
        return f"whole number ≥ {self.minimum}"

    def parse(self, name: str, raw: str) -> Any:
        return _number(name, raw, int, self.minimum)


@dataclass(frozen=True)
class Number(Kind):
    minimum: float = 0

    @property
    def words(self) -> str:
        return f"number ≥ {self.minimum:g}"

    def parse(self, name: str, raw: str) -> Any:
        return _number(name, raw, float, self.minimum)

    def show(self, value: Any) -> str:
        return f"{value:g}"


@dataclass(frozen=True)
class Days(Number):
    """A number of days in the variable, seconds in the field."""

    @property
    def words(self) -> str:
        return f"days ≥ {self.minimum:g}"

    def parse(self, name: str, raw: str) -> float:
        return super().parse(name, raw) * DAY

    def show(self, value: Any) -> str:
        return f"{value / DAY:g} days"


def _number(name: str, raw: str, kind: type, minimum: float):
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


class Flag(Kind):
    words = "1/0 (true/false, yes/no, on/off)"

    def parse(self, name: str, raw: str) -> bool:
        lowered = raw.lower()
        if lowered in ("0", "false", "no", "off"):
            return False
        if lowered in ("1", "true", "yes", "on"):
            return True
        raise ConfigError(f"{name} must be 1 (on) or 0 (off), got {raw!r}.")

    def show(self, value: Any) -> str:
        return "on" if value else "off"


@dataclass(frozen=True)
class OneOf(Kind):
    """One of ``choices`` (a tuple, or a function giving one when the registry decides)."""

    choices: tuple[str, ...] | Callable[[], Iterable[str]] = ()
    fold: Callable[[str], str] | None = None   # str.upper, str.lower: the case the choices are in

    def allowed(self) -> tuple[str, ...]:
        return tuple(self.choices() if callable(self.choices) else self.choices)

    @property
    def words(self) -> str:
        return "one of " + ", ".join(self.allowed())

    def parse(self, name: str, raw: str) -> str:
        value = self.fold(raw) if self.fold else raw
        if value not in self.allowed():
            raise ConfigError(f"{name} must be one of {', '.join(self.allowed())}, got {value!r}.")
        return value


class Words(Kind):
    words = "comma-separated"

    def parse(self, name: str, raw: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())


class SecondsList(Kind):
    words = "comma-separated whole seconds"

    def parse(self, name: str, raw: str) -> tuple[int, ...]:
        try:
            value = tuple(int(part) for part in raw.split(",") if part.strip())
        except ValueError:
            value = ()
        if not value or min(value) < 0:
            raise ConfigError(f"{name} must be comma-separated whole seconds, e.g. 30,120,600; got {raw!r}.")
        return value

    def show(self, value: Any) -> str:
        return ",".join(map(str, value))


class DatabaseURL(Kind):
    words = "SQLAlchemy URL"

    def show(self, value: Any) -> str:
        """Without its password."""
        import sqlalchemy as sa
        try:
            return sa.engine.make_url(value).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return "(not a database URL)"


class Folder(Kind):
    words = "folder"

    def parse(self, name: str, raw: str) -> Path:
        return Path(raw)


# -- declarations --------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One environment variable: what it is called, holds and defaults to, and whether its value
    is a secret (``connector check`` then shows only "set"). ``credential``: a provider cannot
    run without it. ``attr`` is the :class:`Settings` attribute (for a field, the field's name;
    for a provider's setting, the variable's name in lower case unless given)."""

    env: str
    default: Any = None
    help: str = ""
    kind: Kind = TEXT
    secret: bool = False
    credential: bool = False
    default_words: str | None = None     # the table's words for a default decided elsewhere
    attr: str = ""

    def __post_init__(self):
        if not self.attr:
            object.__setattr__(self, "attr", self.env.lower())

    def read(self, environ: Mapping[str, str]) -> Any:
        raw = (environ.get(self.env) or "").strip()
        return self.default if not raw else self.kind.parse(self.env, raw)

    def show(self, value: Any) -> str:
        """The value as ``connector check`` prints it: secrets as set or not set."""
        if self.secret:
            if not value:
                return "not set"
            return f"set ({len(value)} keys)" if isinstance(value, tuple) else "set"
        if value is None:
            return f"not set ({self.default_words or 'default'})"
        return self.kind.show(value) + (" (default)" if value == self.default else "")

    def default_text(self) -> str:
        if self.default_words is not None:
            return self.default_words
        return "—" if self.default in (None, (), "") else self.kind.show(self.default)


def setting(env: str, default: Any, help: str, kind: Kind = TEXT, *, secret: bool = False,
            default_words: str | None = None) -> Any:
    """A :class:`Settings` field read from ``env``: the one line that declares a setting."""
    declared = Setting(env, default, help, kind, secret=secret, default_words=default_words)
    return field(default=default, metadata={"setting": declared})


def field_declarations(cls) -> tuple[Setting, ...]:
    return tuple(dataclasses.replace(f.metadata["setting"], attr=f.name)
                 for f in dataclasses.fields(cls) if "setting" in f.metadata)


def _providers():
    from .providers import PROVIDERS    # the registry imports this module: look it up when asked
    return PROVIDERS


def provider_settings() -> tuple[Setting, ...]:
    """The settings every registered provider declares, in registry order."""
    return tuple(s for provider in _providers().values() for s in provider.own_settings)


def declarations() -> tuple[Setting, ...]:
    """Every setting: the service's, the providers', the worker's."""
    return field_declarations(Settings) + provider_settings() + field_declarations(WorkerSettings)


def _retry_words(schedule: tuple[int, ...]) -> str:
    return f"{len(schedule) + 1} attempts over ~{sum(schedule) / 3600:.0f} h"


# -- the settings --------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerSettings:
    """The worker's knobs (``connector poll``), also read by polls made inside requests."""

    page_budget: int = setting("CONNECTOR_POLL_PAGE_BUDGET", 10,
        "upstream pages one poll may read (the rest waits for the next poll)", Whole(1))
    request_page_budget: int = 2   # pages a poll made inside an HTTP request may read (Zapier waits 30 s)
    frontier_run: int = 3          # consecutive seen followers that mark the known frontier
    lease_seconds: float = setting("CONNECTOR_POLL_LEASE_SECONDS", 120.0,
        "seconds a poller owns a watch before another may take it over", Number(1))
    poll_threads: int = setting("CONNECTOR_POLL_THREADS", 32, "watches one worker polls at once", Whole(1))
    delivery_concurrency: int = setting("CONNECTOR_DELIVERY_CONCURRENCY", 1000,
        "webhook attempts one worker has open at once (each a coroutine, not a thread)", Whole(1))
    claim_batch: int = 200
    idle_sleep: float = setting("CONNECTOR_POLL_IDLE_SLEEP", 0.25,
        "seconds the worker rests between passes (bounds commit-to-delivery latency)", Number(0.01))
    prune_every: float = 600.0     # seconds between two retention passes
    prune_batch: int = 500         # rows one retention statement deletes (short transactions)


@dataclass(frozen=True, init=False)
class Settings:
    """Everything the service is told by its operator, typed. One line declares a setting
    (see the module docstring); the fields without ``setting(...)`` are not variables."""

    provider: str | None = setting("CONNECTOR_PROVIDER", None,
        "provider used when a request names none",
        OneOf(lambda: tuple(_providers())),
        default_words="the first provider with credentials, in registry order")
    database_url: str | None = setting("CONNECTOR_DATABASE_URL", None,
        "SQLAlchemy URL; `postgresql+psycopg://…` when several processes share the work",
        DatabaseURL(), default_words="the SQLite file `instance/connector.db`")
    api_keys: tuple[str, ...] = setting("CONNECTOR_API_KEYS", (),
        "caller keys accepted without a credit limit", Words(), secret=True)
    secret_key: str | None = setting("CONNECTOR_SECRET_KEY", None,
        "encrypts webhook secrets (hooks need it) and stored provider keys (watches created with "
        "`X-Provider-Key`)", secret=True)
    allow_private_targets: bool = setting("CONNECTOR_ALLOW_PRIVATE_TARGETS", False,
        "lets webhook targets resolve to loopback/private addresses", Flag())
    poll_interval: int = setting("CONNECTOR_POLL_INTERVAL", 300,
        "seconds between two polls of one watch (`fixed`; the cold start of `adaptive`)", Whole(1))
    poll_policy: str = setting("CONNECTOR_POLL_POLICY", "adaptive",
        "when watches are polled (docs/polling.md)", OneOf(POLL_POLICIES, str.lower))
    poll_min_interval: int = setting("CONNECTOR_POLL_MIN_INTERVAL", 60,
        "adaptive: the shortest interval between two polls of a watch", Whole(1))
    poll_max_interval: int = setting("CONNECTOR_POLL_MAX_INTERVAL", 1800,
        "adaptive: the longest (at least CONNECTOR_POLL_MIN_INTERVAL)", Whole(1))
    webhook_retry_schedule: tuple[int, ...] = setting("CONNECTOR_WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE,
        "seconds before each retry of a failed delivery",
        SecondsList(), default_words="30 s … 12 h: " + _retry_words(DEFAULT_RETRY_SCHEDULE))
    default_rate_limit: int = setting("CONNECTOR_DEFAULT_RATE_LIMIT", 120,
        "requests a minute for keys without their own", Whole(1))
    max_body_bytes: int = setting("CONNECTOR_MAX_BODY_BYTES", 64 * 1024, "largest request body", Whole(1024))
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 20.0
    upstream_deadline: float = setting("CONNECTOR_UPSTREAM_DEADLINE", 25.0,
        "seconds an upstream call may take, retries included", Number(1))
    upstream_max_attempts: int = 3
    upstream_backoff_base: float = 0.25  # seconds; retries wait up to base * 2**attempt (full jitter)
    upstream_backoff_cap: float = 4.0
    max_hooks_per_key: int = setting("CONNECTOR_MAX_HOOKS_PER_KEY", 100,
        "hooks one caller key may hold", Whole(1))
    max_handles_per_key: int = setting("CONNECTOR_MAX_HANDLES_PER_KEY", 50,
        "distinct watched accounts per key (hooks and polling)", Whole(1))
    lost_follower_max: int = setting("CONNECTOR_LOST_FOLLOWER_MAX", 5000,
        "most followers an account may have to be watched by Lost Follower (full reads)", Whole(1))
    delivery_timeout: float = setting("CONNECTOR_DELIVERY_TIMEOUT", 15.0,
        "seconds one webhook attempt may take, name lookup to last byte", Number(1))
    delivery_max_response_bytes: int = 64 * 1024
    delivery_per_host: int = setting("CONNECTOR_DELIVERY_PER_HOST", 8,
        "webhook attempts at once to one receiver host, per worker", Whole(1))
    delivery_per_key: int = setting("CONNECTOR_DELIVERY_PER_KEY", 4,
        "webhook attempts one key may always have open, per worker (its fair share is more while few keys have work)",
        Whole(1))
    max_requests_in_flight_per_key: int = setting("CONNECTOR_MAX_REQUESTS_IN_FLIGHT_PER_KEY", 4,
        "one key's requests answered at once, per web process (over it: 429)", Whole(1))
    hook_disable_after: float = setting("CONNECTOR_HOOK_DISABLE_AFTER_DAYS", 5 * DAY,
        "a hook failing this long without a success is disabled", Days(0.01))
    retention: float | None = setting("CONNECTOR_RETENTION_DAYS", None,
        "how long events, deliveries and attempts are kept (at least the retry horizon)",
        Days(1), default_words="the retry horizon + 7 days")
    poll_subscription_ttl: float = setting("CONNECTOR_POLL_SUBSCRIPTION_TTL_DAYS", 30 * DAY,
        "a polling subscription nobody calls expires after this", Days(1))
    manifests_dir: Path = setting("CONNECTOR_MANIFESTS_DIR", MANIFESTS_DIR,
        "the manifests to serve", Folder(), default_words="the shipped ones (`manifests/` in a checkout)")
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    log_level: str = setting("CONNECTOR_LOG_LEVEL", "INFO", "log level", OneOf(LOG_LEVELS, str.upper))
    provider_key: str | None = setting("CONNECTOR_PROVIDER_KEY", None,
        "`connector followers --provider-key` when the option is not given", secret=True)
    metrics_token: str | None = setting("CONNECTOR_METRICS_TOKEN", None,
        "`GET /metrics` needs it as a bearer token; unset, only clients on this machine may scrape", secret=True)
    admin_key: str | None = setting("CONNECTOR_ADMIN_KEY", None,
        f"opens the operator console at `/console/` (at least {MIN_ADMIN_KEY} characters); unset, it is off",
        Secret(MIN_ADMIN_KEY, " (it opens the operator console); make one with: "
                              "python -c 'import secrets; print(secrets.token_urlsafe(32))'."),
        secret=True)
    trusted_proxies: int = setting("CONNECTOR_TRUSTED_PROXIES", 0,
        "proxies in front (nginx: 1) whose X-Forwarded-For and X-Forwarded-Proto are believed; 0 believes none",
        Whole(0))
    clock: Callable[[], float] = time.time   # unix seconds; tests pass one they move
    # Values of the settings providers declare, by attribute (``settings.dumpling_api_key``).
    provider_values: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, **values: Any):
        given = dict(values.pop("provider_values", None) or {})
        for f in _FIELDS:
            if f.name in values:
                value = values.pop(f.name)
            else:
                value = f.default_factory() if f.default is dataclasses.MISSING else f.default
            object.__setattr__(self, f.name, value)
        if values:
            declared = {s.attr for s in provider_settings()}
            for name in values:
                if name not in declared:
                    raise TypeError(f"Settings() got an unexpected keyword argument {name!r}")
            given.update(values)
        object.__setattr__(self, "provider_values", MappingProxyType(given))

    def __getattr__(self, name: str) -> Any:
        """A provider's setting, e.g. ``settings.dumpling_api_key``: its value or its default."""
        if name.startswith("_") or "provider_values" not in self.__dict__:
            raise AttributeError(name)
        if name in self.provider_values:
            return self.provider_values[name]
        for declared in provider_settings():
            if declared.attr == name:
                return declared.default
        raise AttributeError(f"'Settings' object has no attribute {name!r}")

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

    @property
    def delivery_lease(self) -> float:
        """How long a claimed delivery is a sender's: its longest attempt (the timeout bounds
        it, name lookup included) plus a margin for starting it and recording the outcome."""
        return self.delivery_timeout + 60.0

    @property
    def poll_freshness(self) -> float:
        """How long a polling caller keeps its watch polled (and pays) after its last request."""
        return max(3 * self.poll_interval, 900)

    def has_credentials(self, provider: str) -> bool:
        cls = _providers().get(provider)
        return cls is not None and cls.has_credentials(self)

    @property
    def default_provider(self) -> str | None:
        """The provider used when a request names none, or None when nothing is configured."""
        if self.provider:
            return self.provider
        for name, cls in _providers().items():
            if cls.needs_credentials() and cls.has_credentials(self):
                return name
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values = {s.attr: s.read(env) for s in field_declarations(cls)}
        values["worker"] = WorkerSettings(**{s.attr: s.read(env) for s in field_declarations(WorkerSettings)})
        values.update({s.attr: s.read(env) for s in provider_settings()})
        if values["poll_max_interval"] < values["poll_min_interval"]:
            raise ConfigError(f"CONNECTOR_POLL_MAX_INTERVAL ({values['poll_max_interval']}) must be at least "
                              f"CONNECTOR_POLL_MIN_INTERVAL ({values['poll_min_interval']}).")
        retention = values["retention"]
        if retention is not None and retention < sum(values["webhook_retry_schedule"]) * 1.2:
            horizon_days = sum(values["webhook_retry_schedule"]) * 1.2 / DAY
            raise ConfigError(
                f"CONNECTOR_RETENTION_DAYS must be at least the webhook retry horizon "
                f"({horizon_days:.1f} days with CONNECTOR_WEBHOOK_RETRY_SCHEDULE), got {retention / DAY:g}; "
                "otherwise deliveries still being retried would be pruned.")
        return cls(**values)


_FIELDS = tuple(f for f in dataclasses.fields(Settings) if f.name != "provider_values")


# -- what people read ------------------------------------------------------------------------

def settings_table() -> str:
    """The Markdown table of every setting, for docs/architecture.md (a test keeps it current)."""
    lines = ["| variable | meaning | kind | default |", "|---|---|---|---|"]
    for s in declarations():
        kind = s.kind.words + (", secret" if s.secret else "")
        default = s.default_text()
        if not s.default_words and default != "—":
            default = f"`{default}`"
        lines.append(f"| `{s.env}` | {s.help} | {kind} | {default} |")
    return "\n".join(lines)


def credential_words(joiner: str = " and ") -> list[str]:
    """Each credentialed provider's credential variables, joined: ``["DUMPLING_API_KEY", …,
    "TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET"]``, for messages saying what to set."""
    return [joiner.join(s.env for s in cls.own_settings if s.credential)
            for cls in _providers().values() if cls.needs_credentials()]


def either(words: list[str]) -> str:
    """``a, b or c``."""
    if not words:
        return "a provider's credentials"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


TABLE_MARKERS = re.compile(r"(<!-- settings-table:[^\n]*-->\n)(.*?)(\n<!-- /settings-table -->)", re.S)


if __name__ == "__main__":   # python -m connector.config [docs/architecture.md]: print, or rewrite the doc's table
    import sys
    if len(sys.argv) < 2:
        print(settings_table())
    else:
        doc = Path(sys.argv[1])
        doc.write_text(TABLE_MARKERS.sub(lambda m: m.group(1) + settings_table() + m.group(3), doc.read_text()))
