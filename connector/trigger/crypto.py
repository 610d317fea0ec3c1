"""Stored provider keys: encrypted for the poller, hashed to tell watches apart.

A caller's provider key (``X-Provider-Key``) is kept for the poller only Fernet-encrypted
with a key derived from ``CONNECTOR_SECRET_KEY``; without that setting it is not stored.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from ..errors import PROVIDER_KEY_OPTION, BadRequest

NO_SECRET_KEY = ("This server cannot store provider keys for triggers: its operator has not set "
                 f"CONNECTOR_SECRET_KEY. Send no {PROVIDER_KEY_OPTION} to use the server's own "
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
