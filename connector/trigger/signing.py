"""Webhook signatures (Standard Webhooks) and the ``whsec_`` secrets they are keyed by.

``webhook-signature`` is ``v1,`` + base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"``, keyed
by the base64-decoded part of the hook's ``whsec_`` secret; ``webhook-id`` is the event id,
stable across retries, so a receiver can drop a repeat. While a rotated hook's previous
secret still signs (:mod:`.hook_secrets`), the header carries both signatures, space-separated,
the new one first: ``v1,<new> v1,<old>``. What the sender needs of a hook row to sign is
:data:`SECRET_COLUMNS`; :func:`signing_secrets` turns them into the secrets in force.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Sequence

from .crypto import decrypt_secret
from .tables import subscriptions

SECRET_PREFIX = "whsec_"
USER_AGENT = "tiktok-connector-webhooks/0.1"
# Select these with a delivery's hook to sign it (plain ``secret``: rows not yet encrypted).
SECRET_COLUMNS = (subscriptions.c.secret, subscriptions.c.secret_enc, subscriptions.c.previous_secret_enc,
                  subscriptions.c.previous_secret_until)


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signing_secrets(secret_key: str | None, row, now: float) -> tuple[str, ...]:
    """The secrets a delivery of this hook is signed with at ``now``: its secret, then its
    previous one until ``previous_secret_until``. ValueError when ``CONNECTOR_SECRET_KEY`` is
    missing or does not decrypt them."""
    current = decrypt_secret(secret_key, row.secret_enc) if row.secret_enc is not None else row.secret
    if row.previous_secret_enc is not None and row.previous_secret_until is not None \
            and now < row.previous_secret_until:
        return current, decrypt_secret(secret_key, row.previous_secret_enc)
    return (current,)


def signed_headers(secret: str | Sequence[str], msg_id: str, body: str, timestamp: int) -> dict:
    """The headers of one delivery, signed with ``secret`` (or each of several, space-separated)."""
    keys = (secret,) if isinstance(secret, str) else tuple(secret)
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(sign(key, msg_id, timestamp, body) for key in keys)}
