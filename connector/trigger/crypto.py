"""Stored secrets: provider keys (encrypted for the poller, hashed to tell watches apart) and
webhook signing secrets (encrypted).

A caller's provider key (``X-Provider-Key``) is kept for the poller only Fernet-encrypted
with a key derived from ``CONNECTOR_SECRET_KEY``; without that setting it is not stored.
Webhook secrets are encrypted the same way under a key of their own (derived with another
label), see :mod:`.hook_secrets`.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from ..errors import PROVIDER_KEY_OPTION, BadRequest

NO_SECRET_KEY = ("This server cannot store provider keys for triggers: its operator has not set "
                 f"CONNECTOR_SECRET_KEY. Send no {PROVIDER_KEY_OPTION} to use the server's own "
                 "provider account, or ask the operator to set CONNECTOR_SECRET_KEY.")


def _fernet(secret_key: str, purpose: bytes = b"provider-credentials") -> Fernet:
    digest = hashlib.sha256(b"tiktok-connector/" + purpose + b":" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_secret(secret_key: str, secret: str) -> str:
    """A webhook secret as stored: a Fernet token under ``CONNECTOR_SECRET_KEY``."""
    return _fernet(secret_key, b"webhook-secrets").encrypt(secret.encode()).decode()


def decrypt_secret(secret_key: str | None, token: str) -> str:
    """A stored webhook secret; ValueError when CONNECTOR_SECRET_KEY is missing or changed."""
    if not secret_key:
        raise ValueError("CONNECTOR_SECRET_KEY is not set; stored webhook secrets cannot be read")
    return _decrypt_secret(secret_key, token)


@functools.lru_cache(maxsize=4096)   # each delivery is signed: a hook's secret is decrypted once, not per delivery
def _decrypt_secret(secret_key: str, token: str) -> str:
    try:
        return _fernet(secret_key, b"webhook-secrets").decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("CONNECTOR_SECRET_KEY changed; stored webhook secrets cannot be read") from None


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
