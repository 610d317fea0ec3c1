"""The New Follower trigger: watches, detection, the outbox and webhook delivery.

One *watch* per (provider, credentials, handle) is polled for every subscription on it:
REST hooks (``kind="hook"``, deliveries by webhook) and polling callers (``kind="poll"``).

    tables.py   the trigger's tables on the shared metadata
    events.py   deterministic event ids and the event shape of CONTRACT.md section 5
    detect.py   pure walking of a newest-first follower list down to the known frontier
    crypto.py   provider-credential encryption, whsec_ secrets and Standard Webhooks signatures
    targets.py  webhook target URL validation (no private addresses unless allowed)
    watches.py  creating watches (baseline), leases, one poll committed in one transaction
    deliver.py  the outbox: signed POSTs, retries with backoff and jitter, 410 unsubscribes
    worker.py   ``poll_due_watches``, ``deliver_due_webhooks`` and the ``connector poll`` command
    api.py      ``/api/v1/hooks`` and ``/api/v1/triggers/new-follower``

Crash safety: reading pages has no side effect but credits; everything a poll learns (seen
followers, cursors, status, events and their delivery rows) commits in one transaction, and
every id is deterministic, so a poll killed at any moment is simply redone.
"""
