"""Secrets of the trigger: stored provider keys, ``whsec_`` secrets, webhook signatures.

A caller's provider key (``X-Provider-Key``) is kept for the poller only Fernet-encrypted
with a key derived from ``CONNECTOR_SECRET_KEY``; without that setting it is not stored.
Signatures follow Standard Webhooks: ``v1,`` + base64 HMAC-SHA256 of ``"{id}.{ts}.{body}"``
keyed by the base64-decoded part of the ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken

from ..errors import BadRequest

SECRET_PREFIX = "whsec_"
NO_SECRET_KEY = ("This server cannot store provider keys for triggers: its operator has not set "
                 "CONNECTOR_SECRET_KEY. Remove the X-Provider-Key header to use the server's own "
                 "provider account, or ask the operator to set CONNECTOR_SECRET_KEY.")


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"tiktok-connector/provider-credentials:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def credential_hash(credentials: str | None) -> str:
    return hashlib.sha256(credentials.encode()).hexdigest() if credentials else ""


def encrypt_credentials(secret_key: str | None, credentials: str | None) -> str | None:
    if not credentials:
        return None
    if not secret_key:
        raise BadRequest(NO_SECRET_KEY)
    return _fernet(secret_key).encrypt(credentials.encode()).decode()


def decrypt_credentials(secret_key: str | None, token: str | None) -> str | None:
    """The stored provider key; ValueError when CONNECTOR_SECRET_KEY is missing or changed."""
    if not token:
        return None
    if not secret_key:
        raise ValueError("CONNECTOR_SECRET_KEY is not set; stored provider keys cannot be read")
    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("CONNECTOR_SECRET_KEY changed; stored provider keys cannot be read") from None


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()
