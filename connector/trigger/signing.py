"""Webhook signatures (Standard Webhooks) and the ``whsec_`` secrets they are keyed by.

``webhook-signature`` is ``v1,`` + base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"``, keyed
by the base64-decoded part of the hook's ``whsec_`` secret; ``webhook-id`` is the event id,
stable across retries, so a receiver can drop a repeat.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
USER_AGENT = "tiktok-connector-webhooks/0.1"


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, msg_id: str, body: str, timestamp: int) -> dict:
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp), "webhook-signature": sign(secret, msg_id, timestamp, body)}
