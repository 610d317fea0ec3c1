"""``connector followers``: every follower (or followed account) of a handle, to a file.

Records are written as each page arrives (JSON lines or CSV, flushed per page), with a
progress line on stderr. Resuming: with ``--out FILE`` a state file ``FILE.cursor`` is
rewritten (atomically) after every page: the cursor of the next page plus counters.
``--resume`` continues from that cursor and appends; the records already written are read
back from FILE itself, so a crash between writing a page and saving the state only means
that page is fetched again and its records are skipped as duplicates.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path

import click

from ..config import Settings
from ..errors import BadRequest, UpstreamError, redact, worded
from ..handles import handle_problem, normalize_handle
from ..manifests import ManifestError, load_manifests
from ..providers import ProviderPool
from ..records import follower_key
from ..records import FOLLOWER_STATS_FIELDS, FOLLOWER_USER_FIELDS
from ..walk import CSV_FIELDS, WalkStats, walk_list
from .base import CLI_WORDS, fail, load_settings, upstream_words

STATE_VERSION = 1
PROGRESS_INTERVAL = 0.1  # seconds between two redraws of the progress line

WALK_ATTEMPTS = 5        # attempts per upstream call of a bulk walk
WALK_DEADLINE = 120.0    # seconds one call may take, its retries included (Retry-After up to ~2 min)


@click.command("followers")
@click.argument("handle")
@click.option("--following", is_flag=True, help="Walk the accounts HANDLE follows instead of its followers.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after N records.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE (default: stdout). Needed for --resume.")
@click.option("--resume", is_flag=True, help="Continue an interrupted walk into --out from FILE.cursor.")
@click.option("--provider", "provider_name", default=None,
              help="Provider to use (default: CONNECTOR_PROVIDER or the first with credentials).")
@click.option("--provider-key", default=None,
              help="The provider's key (tiktok_research: client_key:client_secret); "
                   "default: the configured one.")
@click.option("--count", type=click.IntRange(1, 100), default=None, help="Page size, where the provider allows.")
def followers_command(handle, following, limit, fmt, out, resume, provider_name, provider_key, count):
    """Write every follower (or followed account) of HANDLE, newest first, one per line."""
    which = "following" if following else "followers"
    name = normalize_handle(handle)
    if name is None:
        raise click.BadParameter(f"{handle[:60]!r} is not a TikTok handle. {handle_problem(handle)}",
                                 param_hint="HANDLE")
    if resume and out is None:
        raise click.UsageError("--resume needs --out FILE (the walk's state is kept in FILE.cursor).")
    settings = load_settings()
    provider_key = provider_key or settings.provider_key
    # No caller waits 30 s for a bulk export: the upstream calls get a patient retry policy
    # (rate limits waited out), which is the only one; the walk does not retry on top of it.
    pool = ProviderPool(settings.replace(upstream_max_attempts=max(settings.upstream_max_attempts, WALK_ATTEMPTS),
                                         upstream_deadline=max(settings.upstream_deadline, WALK_DEADLINE)))
    try:
        provider = pool.get(pool.resolve_name(provider_name, provider_key), provider_key or None)
        provider.operation(f"list_{which}")
    except BadRequest as exc:
        raise fail(exc) from None
    except UpstreamError as exc:
        raise click.ClickException(_explain(exc, settings, which, name, ())) from None

    state_path = out.with_name(out.name + ".cursor") if out is not None else None
    identity = {"version": STATE_VERSION, "handle": name, "list": which, "provider": provider.name,
                "format": fmt}
    stats = WalkStats()
    seen: set[str] = set()
    if resume:
        if not state_path.exists():
            raise click.ClickException(f"No walk to resume: {state_path} does not exist.")
        try:
            state = json.loads(state_path.read_text())
        except ValueError:
            raise click.ClickException(f"{state_path} is not a walk state file.") from None
        mismatch = [k for k, v in identity.items() if state.get(k) != v]
        if mismatch:
            raise click.ClickException(f"{state_path} belongs to another walk ({', '.join(mismatch)} differ: "
                                       + ", ".join(f"{k}={state.get(k)!r}" for k in mismatch) + ").")
        seen = _read_back(out, fmt)
        stats.pages, stats.credits = state.get("pages", 0), state.get("credits", 0)
        if state.get("done"):
            click.echo(f"The walk into {out} is already complete ({len(seen):,} records).", err=True)
            return
        stats.cursor = state.get("cursor")
    already = len(seen)
    label = f"{which} of @{name} via {provider.name}"
    progress = Progress(label, offset=already)
    stream = out.open("a" if resume else "w", encoding="utf-8", newline="") if out is not None else sys.stdout
    page_cursor = stats.cursor  # the cursor that fetches the page being handled
    try:
        if fmt == "csv" and (not resume or out.stat().st_size == 0):
            stream.write(",".join(CSV_FIELDS) + "\n")
        for page, fresh in walk_list(provider, name, which, cursor=stats.cursor, seen=seen, count=count, stats=stats):
            resume_cursor, limited, cut = stats.cursor, False, False
            if limit is not None and already + stats.records >= limit:
                limited = True
                over = already + stats.records - limit
                if over:  # cut the page short; a resume fetches it again and skips what was written
                    for record in fresh[len(fresh) - over:]:
                        seen.discard(follower_key(record))
                    fresh = fresh[: len(fresh) - over]
                    stats.records -= over
                    resume_cursor, cut = page_cursor, True
            stream.write(_format_records(fresh, fmt))
            stream.flush()
            if state_path is not None:
                _write_state(state_path, {**identity, "cursor": resume_cursor, "records": already + stats.records,
                                          "pages": stats.pages, "credits": stats.credits,
                                          "done": stats.done and not cut})
            page_cursor = stats.cursor
            progress.update(stats)
            if limited:
                stats.done = stats.done and not cut
                break
    except UpstreamError as exc:
        progress.update(stats, final=True)
        hint = f" Run again with --resume to continue from page {stats.pages + 1}." if out is not None else ""
        raise click.ClickException(_explain(exc, settings, which, name, provider.secrets()) + hint) from None
    except KeyboardInterrupt:
        progress.update(stats, final=True)
        raise click.ClickException("Interrupted." + (" Continue with --resume." if out is not None else "")) from None
    finally:
        if out is not None:
            stream.close()
        pool.close()
    progress.update(stats, final=True)
    summary = (f"{already + stats.records:,} records in {stats.pages:,} pages"
               f" ({stats.duplicates:,} duplicates dropped), {time.monotonic() - stats.started:.1f}s")
    if stats.done and stats.total is not None and already + stats.records < stats.total:
        summary += (f"; the upstream lists only the newest {already + stats.records:,} "
                    f"of {stats.total:,}")
    click.echo(("Done: " if stats.done else "Stopped at --limit: ") + summary + ".", err=True)


def _explain(exc: UpstreamError, settings: Settings, which: str, handle: str, secrets: tuple) -> str:
    """The seed's message for the failure, plus the redacted detail (the operator runs this)."""
    try:
        messages = load_manifests(settings.manifests_dir)[f"list_{which}"].errors
        message = exc.user_message(messages, handle)
    except (ManifestError, KeyError):
        message = exc.kind.replace("_", " ")
    message = upstream_words(exc.kind, exc.provider, message)
    if exc.kind == "not_configured":   # nothing was called: there is no detail to show
        return message
    return worded(f"{message} ({exc.provider or 'provider'}: {redact(exc.detail, secrets)})", CLI_WORDS)


# -- output files ----------------------------------------------------------------------------

def _csv_cell(value) -> object:
    """A value as a CSV cell: booleans as true/false (as in JSON), nothing as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _csv_row(record: dict) -> list:
    user, stats = record.get("user") or {}, record.get("stats") or {}
    values = [user.get(name) for name in FOLLOWER_USER_FIELDS] + [stats.get(name) for name in FOLLOWER_STATS_FIELDS]
    return [_csv_cell(value) for value in values]


def _format_records(records: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(_csv_row(r) for r in records)
    return buffer.getvalue()


def _read_back(path: Path, fmt: str) -> set[str]:
    """Follower keys of the records already in ``path``; a torn last line is cut off first."""
    if not path.exists():
        return set()
    with path.open("rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            handle.truncate(end)  # the walk was killed in the middle of a line
            data = data[:end]
    text = data.decode("utf-8")
    keys = set()
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                keys.add(follower_key(json.loads(line)))
            except (ValueError, AttributeError, TypeError):
                raise click.ClickException(f"{path}:{number} is not a record written by this command; "
                                           "start over without --resume.") from None
        return keys
    rows = csv.DictReader(io.StringIO(text))
    if rows.fieldnames and list(rows.fieldnames) != list(CSV_FIELDS):
        raise click.ClickException(f"{path} is not a CSV written by this command; start over without --resume.")
    for row in rows:
        try:
            keys.add(follower_key({"user": {k: row.get(k) or None for k in ("id", "secUid", "uniqueId")}}))
        except ValueError:
            raise click.ClickException(f"{path} has a row without id, secUid or uniqueId.") from None
    return keys


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)  # never a half-written state file


# -- progress ---------------------------------------------------------------------------------

class Progress:
    """One ``\\r`` line on stderr, redrawn at most every ``interval`` seconds."""

    def __init__(self, label: str, offset: int = 0, interval: float | None = None, stream=None):
        self.label = label
        self.offset = offset  # records written before a resume
        self.interval = PROGRESS_INTERVAL if interval is None else interval
        self.stream = stream or sys.stderr
        self._last = 0.0

    def line(self, stats: WalkStats) -> str:
        of = f" of {stats.total:,}" if stats.total is not None else ""
        return (f"{self.label}: {self.offset + stats.records:,}{of} records, {stats.pages:,} pages, "
                f"{stats.credits:,} credits, {stats.rate:,.0f} records/s")

    def update(self, stats: WalkStats, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._last >= self.interval:
            self._last = now
            self.stream.write("\r" + self.line(stats) + ("\n" if final else ""))
            self.stream.flush()
