"""The console's pages: sign-in, overview, watches, an account, hooks, a hook, replay, keys.

Server-rendered HTML (Jinja, autoescaped) with no script; every page answers with a Content
Security Policy that allows nothing but this app's own stylesheet, so the browser makes no
request elsewhere. Reads come from :mod:`.queries`; changes go through the trigger's domain
functions. Bad input gets the page again with a message saying what to fix (a 4xx, never a 500).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from ..api.common import services, unexpected
from ..api.errors import HTTP_WORDS, status_of
from ..errors import ConnectorError, NotFoundError, worded
from ..handles import MAX_HANDLE_LENGTH, normalize_handle, profile_url
from ..store.keys import Caller
from ..trigger import replay as replays
from ..trigger.events import iso
from ..trigger.schedule_stats import fleet_schedule
from ..trigger.subscriptions import set_hook_enabled
from ..trigger import snapshot
from ..trigger.watches import reader_manifest, trigger_manifest
from . import queries
from .auth import (LOGIN_COOKIE, LOGIN_SECONDS, SESSION_COOKIE, SESSION_SECONDS, Gate, SignInThrottle,
                   clear_cookie, same_token, set_cookie)
from .chart import growth_svg

log = logging.getLogger("connector")
THROTTLE = "connector.console_sign_in"   # the app's SignInThrottle, in app.extensions

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
CHART_DAYS = (7, 30, 90, 365)
MAX_FIELD = 200
NOTICES = {
    "paused": "The hook is paused: nothing is read or sent for it until it is resumed.",
    "enabled": "The hook is enabled again; its waiting deliveries go out with the next worker pass.",
    "signed_out": "Signed out.",
}


class FormProblem(Exception):
    """Bad input to a console form or link: the page is shown again with this message."""


# -- access --------------------------------------------------------------------------------

@bp.before_request
def gate():
    svc = services()
    g.now = svc.clock()
    g.csrf = None
    if not svc.settings.admin_key:   # the stylesheet still loads, so the page saying so is styled
        return None if request.endpoint == "console.static" else _page("console/off.html", 404)
    g.gate = Gate(svc.settings.admin_key, svc.clock, svc.store)
    if request.endpoint in ("console.static", "console.login", "console.login_form"):
        return None
    token = g.gate.session(request.cookies.get(SESSION_COOKIE))
    if token is None:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("console.login_form", next=request.full_path.rstrip("?")))
        return _page("console/error.html", 403, title="Sign in first",
                     message="This console session is missing or has expired: sign in again, then retry.")
    g.csrf = token
    if request.method == "POST" and not same_token(token, request.form.get("csrf_token")):
        return _csrf_refused()
    return None


def _csrf_refused():
    return _page("console/error.html", 403, title="Form refused",
                 message="The form did not carry this session's CSRF token (it may be from an old page or "
                         "another site): nothing was changed. Reload the page and try again.")


@bp.after_request
def headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(ConnectorError)
def connector_error(exc: ConnectorError):
    return _page("console/error.html", status_of(exc), title="Not found" if isinstance(exc, NotFoundError)
                 else "Request refused", message=exc.message)


@bp.errorhandler(FormProblem)
def form_problem(exc: FormProblem):
    return _page("console/error.html", 400, title="Request refused", message=str(exc))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    message = exc.description or exc.name
    if exc.code == 413:
        message = f"The form is too large: the limit is {request.max_content_length // 1024} KB."
    return _page("console/error.html", exc.code or 500, title=exc.name, message=message)


@bp.errorhandler(Exception)
def unhandled(exc: Exception):
    return _page("console/error.html", 500, title="Server error", message=unexpected(None, exc).message)


def _secure() -> bool:
    return request.is_secure


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target \
            and len(target) < 500:
        return target
    return url_for("console.overview")


@bp.get("/login")
def login_form():
    if g.gate.session(request.cookies.get(SESSION_COOKIE)):
        return redirect(_safe_next(request.args.get("next")))
    return _login_page(200, None)


def _login_page(status: int, error: str | None):
    token, cookie = g.gate.new_login()
    response = _page("console/login.html", status, error=error, login_csrf=token,
                     next=_safe_next(request.values.get("next")),
                     notice=NOTICES.get(request.args.get("notice", "")))
    set_cookie(response, LOGIN_COOKIE, cookie, LOGIN_SECONDS, _secure())
    return response


@bp.post("/login")
def login():
    expected = g.gate.login(request.cookies.get(LOGIN_COOKIE))
    if not same_token(expected, request.form.get("csrf_token")):
        return _login_page(403, "The sign-in form had expired or did not come from this console; "
                                "enter the admin key again.")
    entered = (request.form.get("admin_key") or "").strip()
    if not entered:
        return _login_page(400, "Enter the admin key (CONNECTOR_ADMIN_KEY).")
    throttle = _throttle()
    address = request.remote_addr or "unknown"
    wait = throttle.wait(address)
    if wait is not None:     # refused before the key is compared: guessing gets no answer
        seconds, whose = wait
        log.warning("console sign-in from %s refused: too many failed sign-ins from %s; retry in %d s",
                    address, whose, seconds)
        response = _login_page(429, f"Too many failed sign-ins from {whose}: try again in {seconds} s.")
        response.headers["Retry-After"] = str(seconds)
        return response
    if len(entered) > 1000 or not g.gate.check_key(entered):
        throttle.failed(address)
        log.warning("console sign-in from %s failed: not the admin key", address)
        return _login_page(401, "That is not the admin key. The console opens with CONNECTOR_ADMIN_KEY "
                                "only; caller keys (tc_…) do not open it.")
    _token, cookie = g.gate.new_session()
    response = redirect(_safe_next(request.form.get("next")), 303)
    set_cookie(response, SESSION_COOKIE, cookie, SESSION_SECONDS, _secure())
    clear_cookie(response, LOGIN_COOKIE, _secure())
    return response


def _throttle() -> SignInThrottle:
    throttle = current_app.extensions.get(THROTTLE)
    if throttle is None:     # one per app (and process); two requests racing here keep one of theirs
        throttle = current_app.extensions.setdefault(THROTTLE, SignInThrottle(services().clock))
    return throttle


@bp.post("/logout")
def logout():
    g.gate.end_session(request.cookies.get(SESSION_COOKIE))   # everywhere the cookie was copied
    response = redirect(url_for("console.login_form", notice="signed_out"), 303)
    clear_cookie(response, SESSION_COOKIE, _secure())
    return response


# -- helpers -------------------------------------------------------------------------------

def _page(template: str, status: int = 200, **context):
    return make_response(render_template(template, **context), status)


@bp.context_processor
def helpers():
    now = g.get("now")

    def when(ts):
        if ts is None:
            return "—"
        return iso(ts)

    def ago(ts):
        if ts is None or now is None:
            return ""
        text = span(abs(ts - now))
        return f"in {text}" if ts > now else f"{text} ago"

    def page_url(number: int, **args):
        params = {k: v for k, v in request.args.items() if k not in ("page", "notice", "n")}
        params.update(args)
        params["page"] = number
        return f"{request.path}?{urlencode(params)}"

    def profile(unique_id):
        handle = normalize_handle(unique_id) if isinstance(unique_id, str) else None
        return profile_url(handle) if handle else None

    def initials(name):
        letters = [part[0] for part in str(name or "?").replace("_", " ").replace(".", " ").split() if part]
        return ("".join(letters[:2]) or "?").upper()

    def said(message):
        """A stored error as the API words it (they were written once for every edge)."""
        return worded(message, HTTP_WORDS) if message else ""

    return {"when": when, "ago": ago, "span": span, "said": said, "page_url": page_url, "profile": profile,
            "initials": initials, "csrf_token": g.get("csrf"), "signed_in": g.get("csrf") is not None}


def span(seconds: float) -> str:
    """A duration in words a person reads at a glance: 42 s, 7 min, 3.5 h, 2.0 days."""
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _text(name: str) -> str:
    value = request.values.get(name, "")
    if len(value) > MAX_FIELD:
        raise FormProblem(f"'{name}' is too long ({len(value)} characters; at most {MAX_FIELD}).")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise FormProblem(f"'{name}' must not contain control characters.")
    return value.strip()


def _page_number() -> int:
    raw = _text("page") or "1"
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise FormProblem(f"The page must be a whole number from 1, got {raw[:20]!r}.")
    return int(raw)


def _filters(conn) -> queries.Filters:
    key, handle = _text("key"), _text("handle").lstrip("@").lower()
    if handle and (len(handle) > MAX_HANDLE_LENGTH or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789_."
                                                          for c in handle)):
        raise FormProblem(f"The handle filter takes part of a TikTok handle: up to {MAX_HANDLE_LENGTH} "
                          "letters (a-z), digits, '_' or '.'.")
    key_ids = None
    if key:
        static = {caller.id: caller.id for caller in services().keys.static.values()}
        key_ids = queries.resolve_key(conn, static, key)
        if not key_ids:
            raise FormProblem(f"No key has the id, name or prefix {key[:60]!r}; the Keys page lists them.")
    return queries.Filters(key_ids=key_ids, handle=handle)


def _listing(template: str, load, **context):
    """A filtered, paginated list; bad filters show the page with a message (400)."""
    svc = services()
    with svc.store.connect() as conn:
        try:
            filters, number = _filters(conn), _page_number()
        except FormProblem as exc:
            return _page(template, 400, error=str(exc), page=None, **context)
        page = load(conn, filters, number)
    return _page(template, 200, page=page, error=None, **context)


# -- pages ---------------------------------------------------------------------------------

@bp.get("/")
def overview():
    svc = services()
    cost = trigger_manifest(svc.manifests).cost
    with svc.store.connect() as conn:
        summary = queries.overview(conn, svc.settings, now=g.now, cost=cost)
        schedule = fleet_schedule(conn, svc.settings, now=g.now)
        newest = queries.hook_page(conn, queries.Filters(), now=g.now, size=5)
    return _page("console/overview.html", summary=summary, recent_hooks=newest.rows,
                 static_keys=len(svc.keys.static), poll_interval=svc.settings.poll_interval, schedule=schedule,
                 settings=svc.settings)


@bp.get("/watches")
def watch_list():
    return _listing("console/watches.html", lambda conn, f, n: queries.watch_page(conn, f, n))


@bp.get("/watches/<wid>")
def watch(wid: str):
    svc = services()
    raw_days = _text("days") or "30"
    error = None
    if raw_days not in {str(d) for d in CHART_DAYS}:
        error = f"Days must be one of {', '.join(map(str, CHART_DAYS))}; showing 30."
        raw_days = "30"
    days = int(raw_days)
    with svc.store.connect() as conn:
        detail = queries.watch_detail(conn, wid)
        if detail is None:
            raise NotFoundError(f"No watch with id {wid[:60]}; the Watches page lists them.")
        words = _watch_words(svc.manifests, detail)
        growth = queries.growth(conn, detail["id"], now=g.now, days=days)
        followers = queries.latest_events(conn, detail["id"], words["subject"])
    return _page("console/watch.html", 400 if error else 200, watch=detail, growth=growth,
                 chart=growth_svg(growth, detail["handle"], words["noun"]), followers=followers, days=days,
                 chart_days=CHART_DAYS, error=error, words=words)


def _watch_words(manifests, watch: dict) -> dict:
    """How the watch page names what a watch reads: a list of followers or of accounts
    followed (growth, backlog, latest accounts), a profile (milestones) or full walks (losses)."""
    try:
        reader = reader_manifest(manifests, watch["operation"])
    except KeyError:          # (no manifest reads it any more)
        reader = None
    strategy = reader.strategy if reader else "newest_first"
    subject = reader.subject if reader else "follower"
    if strategy == "threshold":
        return {"kind": "profile", "subject": subject, "noun": "milestones", "latest": "Latest milestones",
                "none": "No milestone reached yet."}
    if strategy == "snapshot":
        try:
            state = snapshot.load(watch.get("state"))
        except (ValueError, TypeError):
            state = {}
        return {"kind": "snapshot", "subject": subject, "noun": "lost followers", "walked": state.get("total"),
                "walks": state.get("walks"), "latest": "Latest lost followers",
                "none": "No follower lost yet: a loss needs two full walks in a row without the follower."}
    accounts = "followers" if subject == "follower" else "accounts followed"
    return {"kind": "list", "subject": subject, "accounts": accounts, "noun": f"new {accounts}",
            "known": f"{accounts.capitalize()} known",
            "latest": f"Latest {accounts}", "none": f"No {accounts} stored for this watch yet."}


@bp.get("/hooks")
def hook_list():
    return _listing("console/hooks.html", lambda conn, f, n: queries.hook_page(conn, f, now=g.now, number=n))


def _hook_page(hook_id: str, status: int = 200, **context):
    svc = services()
    with svc.store.connect() as conn:
        hook = queries.hook_detail(conn, hook_id, now=g.now)
    if hook is None:
        raise NotFoundError(f"No hook with id {hook_id[:60]}; the Hooks page lists them.")
    context.setdefault("since_default", _since_value(hook["first_event_at"] or g.now - 86400))
    notice = context.pop("notice", None) or NOTICES.get(request.args.get("notice", ""))
    if request.args.get("notice") == "replayed":
        notice = f"{_count_arg()} deliveries queued again; the worker sends them with the same webhook ids."
    return _page("console/hook.html", status, hook=hook, notice=notice, **context)


def _count_arg() -> int:
    raw = request.args.get("n", "0")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0


@bp.get("/hooks/<hook_id>")
def hook(hook_id: str):
    return _hook_page(hook_id)


@bp.post("/hooks/<hook_id>/state")
def hook_state(hook_id: str):
    action = request.form.get("action", "")
    if action not in ("pause", "enable"):
        return _hook_page(hook_id, 400, error="Choose an action: pause, or enable (resume, re-enable).")
    svc = services()
    with svc.store.connect() as conn:
        hook = queries.hook_detail(conn, hook_id, now=g.now)
    if hook is None:
        raise NotFoundError(f"No hook with id {hook_id[:60]}; the Hooks page lists them.")
    owner = Caller(id=hook["key_id"], name="operator console", credits=None, rate_limit=0)
    set_hook_enabled(svc, owner, hook["id"], action == "enable")
    return redirect(url_for("console.hook", hook_id=hook["id"], notice="paused" if action == "pause" else "enabled"),
                    303)


def _since_value(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M")


def _parse_since(raw: str) -> float:
    """``YYYY-MM-DDTHH:MM`` (a datetime-local field, UTC), or ISO 8601 with a zone."""
    text = raw.strip()
    if not text:
        raise FormProblem("Choose the time to replay from (UTC), e.g. 2026-11-20T09:00.")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise FormProblem(f"{text[:40]!r} is not a time: write it as YYYY-MM-DDTHH:MM (UTC).") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if not 2000 <= moment.year <= 2999:
        raise FormProblem(f"{text[:40]!r} is not a plausible time to replay from.")
    ts = moment.timestamp()
    if ts > g.now:
        raise FormProblem("That time is in the future: nothing was detected after it yet.")
    return ts


def _replay_since(hook_id: str):
    """The replay form's time, or the hook's page again with what to fix (400)."""
    try:
        return _parse_since(_text("since")), None
    except FormProblem as exc:
        return None, _hook_page(hook_id, 400, error=str(exc), since_default=request.values.get("since", "")[:40])


@bp.get("/hooks/<hook_id>/replay")
def replay_confirm(hook_id: str):
    """The confirm step: what a replay from this time would send, counted before anything changes."""
    since, problem = _replay_since(hook_id)
    if problem is not None:
        return problem
    plan = replays.replay_plan(services(), hook_id, since)
    return _page("console/replay.html", plan=plan, since_iso=iso(since), hook_id=plan.hook_id)


@bp.post("/hooks/<hook_id>/replay")
def replay(hook_id: str):
    since, problem = _replay_since(hook_id)
    if problem is not None:
        return problem
    queued = replays.replay(services(), hook_id, since)
    return redirect(url_for("console.hook", hook_id=hook_id[:40], notice="replayed", n=queued), 303)


@bp.get("/keys")
def key_list():
    svc = services()
    svc.keys.flush_usage()
    cost = trigger_manifest(svc.manifests).cost
    return _listing("console/keys.html",
                    lambda conn, f, n: queries.key_page(conn, f.key_ids, svc.keys.leased_credits(conn), number=n),
                    cost=cost,
                    static_keys=len(svc.keys.static), default_rate=svc.settings.default_rate_limit)
