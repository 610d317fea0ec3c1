"""Webhook signing secrets at rest: encrypted with ``CONNECTOR_SECRET_KEY``, checked at start,
rotated with an overlap.

A hook's ``whsec_`` secret is shown to its creator and then kept only as a Fernet token
(:func:`.crypto.encrypt_secret`), so reading the database is not enough to sign webhooks.
Rows written before encryption existed (plain ``secret``) are encrypted by the first process
started with the key (:func:`check_at_start`); a process started without the key while hooks
exist stops and names the setting. Rotating gives the hook a new secret and keeps the old one
signing beside it for :data:`ROTATION_OVERLAP` seconds (both signatures on each delivery,
space-separated, as Standard Webhooks allows), so receivers switch without losing a delivery.
"""

from __future__ import annotations

import base64
import binascii

import sqlalchemy as sa

from ..config import ConfigError
from ..errors import BadRequest
from .crypto import decrypt_secret, encrypt_secret
from .signing import SECRET_PREFIX, new_webhook_secret
from .tables import subscriptions

ROTATION_OVERLAP = 24 * 3600.0
SECRET_KEY_SETTING = "CONNECTOR_SECRET_KEY"
MAKE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
NO_KEY_FOR_HOOKS = ("This server cannot create webhooks: its operator has not set CONNECTOR_SECRET_KEY, "
                    "which encrypts webhook signing secrets; ask the operator to set it.")


def seal_plain_secrets(store, secret_key: str) -> int:
    """Encrypt the secrets of rows written in plain text; how many there were."""
    with store.write() as conn:
        rows = conn.execute(sa.select(subscriptions.c.id, subscriptions.c.secret)
                            .where(subscriptions.c.secret.is_not(None))).all()
        for row in rows:
            conn.execute(subscriptions.update().where(subscriptions.c.id == row.id)
                         .values(secret_enc=encrypt_secret(secret_key, row.secret), secret=None))
    return len(rows)


def check_at_start(store, secret_key: str | None) -> None:
    """Before serving hooks: without a key while hooks exist, or with a key that does not read
    their secrets, :class:`ConfigError` in one sentence; with a key, plain rows are encrypted."""
    with store.connect() as conn:
        hooks = conn.execute(sa.select(sa.func.count()).select_from(subscriptions)
                             .where(subscriptions.c.kind == "hook")).scalar_one()
        sample = conn.execute(sa.select(subscriptions.c.secret_enc)
                              .where(subscriptions.c.secret_enc.is_not(None)).limit(1)).scalar()
    if not secret_key:
        if hooks:
            raise ConfigError(f"{hooks} webhook subscription{'s' if hooks != 1 else ''} exist{'' if hooks != 1 else 's'} "
                              f"and their signing secrets are kept encrypted: set {SECRET_KEY_SETTING} "
                              f"(make one with {MAKE_KEY}) and keep it.")
        return
    if sample is not None:
        try:
            decrypt_secret(secret_key, sample)
        except ValueError:
            raise ConfigError(f"{SECRET_KEY_SETTING} does not decrypt the stored webhook secrets: set it back "
                              "to the key they were encrypted with.") from None
    seal_plain_secrets(store, secret_key)


def new_stored_secret(secret_key: str | None, secret: str | None = None) -> tuple[dict, str]:
    """A hook's new secret (``secret``, else a random one) as its columns, and in plain text;
    :class:`BadRequest` naming the setting when the server has no ``CONNECTOR_SECRET_KEY``."""
    if not secret_key:
        raise BadRequest(NO_KEY_FOR_HOOKS)
    secret = secret or new_webhook_secret()
    return {"secret_enc": encrypt_secret(secret_key, secret)}, secret


def current_secret(secret_key: str | None, row) -> str:
    """A hook row's secret in plain text (for its creator, or a receiver's redaction)."""
    if row["secret_enc"] is not None:
        return decrypt_secret(secret_key, row["secret_enc"])
    return row["secret"]


def check_new_secret(value) -> str:
    """A secret the caller chose for a rotation: ``whsec_`` + base64 of 24 to 64 bytes."""
    problem = (f"'secret' must be a string: {SECRET_PREFIX} followed by the base64 of 24 to 64 random bytes "
               "(or leave it out to get a new random secret).")
    if not isinstance(value, str) or not value.startswith(SECRET_PREFIX) or len(value) > 200:
        raise BadRequest(problem)
    try:
        raw = base64.b64decode(value[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(problem) from None
    if not 24 <= len(raw) <= 64:
        raise BadRequest(problem)
    return value
