"""The *threshold* strategy: multiples of a profile figure (Follower Milestone).

A read is one profile (its cost, per paying key). Each subscription keeps the highest figure
it has been shown (``subscriptions.state`` ``{"above": n}``, first the figure at subscribe
time); a read showing ``count`` fires, for that subscription, every multiple of its step
(``every``) in ``(above, count]``, in ascending order, then moves ``above`` to ``count``
when higher. So several multiples passed between two reads each fire once, and a figure
that falls and rises again never fires one twice. A milestone's id is a pure function of
the watch, the step and the multiple (:func:`.events.subject_key`): subscriptions with the
same step share its event; each receives it once (one delivery or inbox row per
subscription and event).
"""

from __future__ import annotations

import json

from .events import dumps, event_id, iso, subject_key


def figure(manifest, record: dict) -> int | None:
    """The profile figure a threshold trigger compares (``trigger.figure`` of its stats)."""
    value = (record.get("stats") or {}).get(manifest.trigger["figure"])
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def step(manifest, inputs: dict) -> int:
    key = manifest.trigger["step"]
    return int(inputs.get(key) or next(s["default"] for s in manifest.inputs if s["key"] == key))


def above(sub) -> int | None:
    return json.loads(sub["state"]).get("above") if sub["state"] else None


def initial_state(count: int | None) -> str | None:
    return json.dumps({"above": count}) if count is not None else None


def milestone_row(watch, manifest, every: int, multiple: int, count: int, now: float, *,
                  baseline: bool = False) -> dict:
    subject = subject_key(manifest.event, f"{every}:{multiple}")
    payload = {"id": event_id(watch["id"], subject), "event": manifest.event, "handle": watch["handle"],
               manifest.subject: multiple, manifest.trigger["figure"]: count, "detectedAt": iso(now),
               "provider": watch["provider"]}
    return {"id": payload["id"], "watch_id": watch["id"], "follower_key": subject, "event": manifest.event,
            "payload": dumps(payload), "detected_at": now, "baseline": baseline}


def last_passed(manifest, inputs: dict, count: int | None, watch, now: float) -> list[dict]:
    """A new subscription's sample: the last multiple the figure has passed (a baseline event,
    never delivered), or nothing below the first multiple."""
    if count is None:
        return []
    every = step(manifest, inputs)
    multiple = count // every * every
    return [milestone_row(watch, manifest, every, multiple, count, now, baseline=True)] if multiple > 0 else []


def threshold_events(manifest, watch, subs, count: int, payers: frozenset, now: float, silent=()):
    """The events a read showing ``count`` fires, oldest (lowest) first, with their recipients
    (``[(hook_ids, poll_ids)]``), and the subscriptions' new states ``{sub id: state}``."""
    fired: dict[str, dict] = {}
    recipients: dict[str, tuple[list, list]] = {}
    states: dict[str, str] = {}
    for sub in subs:
        if sub["event"] != manifest.event or sub["key_id"] not in payers or sub["status"] in silent:
            continue
        inputs = json.loads(sub["inputs"]) if sub["inputs"] else {}
        every, mark = step(manifest, inputs), above(sub)
        if mark is None:                    # (no figure was known at subscribe time)
            states[sub["id"]] = initial_state(count)
            continue
        for multiple in range((mark // every + 1) * every, count + 1, every):
            row = milestone_row(watch, manifest, every, multiple, count, now)
            fired.setdefault(row["id"], row)
            hooks, polls = recipients.setdefault(row["id"], ([], []))
            (hooks if sub["kind"] == "hook" else polls).append(sub["id"])
        if count > mark:
            states[sub["id"]] = initial_state(count)
    rows = sorted(fired.values(), key=lambda r: json.loads(r["payload"])[manifest.subject])
    return rows, [recipients[row["id"]] for row in rows], states
