"""The New Follower trigger: watches, detection, billing, the outbox and webhook delivery.

One *watch* per (provider, credentials, handle) is polled for every subscription on it:
REST hooks (``kind="hook"``, deliveries by webhook) and polling callers (``kind="poll"``,
an inbox read by the polling route). Each concern has its module:

    tables.py         the trigger's tables on the shared metadata
    events.py         deterministic event ids and the event shape of CONTRACT.md section 5
    detect.py         pure walking of a newest-first follower list down to the known frontier
    billing.py        who pays for a page and who may see it; reserve, refund, pause, resume
    leases.py         which poller owns a watch, until when
    watches.py        watch ids, gaps, creating a watch with its baseline
    subscriptions.py  hooks and polling subscriptions: dedupe, quotas, views, the inbox
    poll.py           one poll: pages paid and read down to the frontier, then one commit
    outbox.py         the commit: seen followers, events, deliveries and inbox rows at once
    deliver.py        claiming deliveries per key and receiver host, one attempt, recording outcomes
    webhook_client.py one POST under one deadline to a checked address, a capped part of the answer read
    sender.py         the delivery loop, apart from polling: fair share between keys, cap per receiver host
    signing.py        whsec_ secrets and Standard Webhooks signatures
    crypto.py         provider keys stored encrypted for the poller
    targets.py        webhook target checks (no private addresses unless allowed), DNS with a timeout
    retention.py      pruning of old events, deliveries, attempts and idle polling subscriptions
    replay.py         a hook's deliveries sent again from a chosen time, same event ids
    worker.py         ``poll_due_watches``, ``run_worker`` and the ``connector poll`` command

The routes are blueprints in :mod:`connector.api` (``hooks.py``, ``triggers.py``).

Time comes from ``svc.clock`` (unix seconds), so tests of leases, retries, retention and
disabling move time instead of sleeping. Crash safety: reading pages has no side effect
but credits (given back if the poll is not committed); everything a poll learns commits
in one transaction with deterministic ids, so a poll killed at any moment is simply redone.
"""
