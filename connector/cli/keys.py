"""``connector keys``: caller API keys, their credits and rate limits."""

from __future__ import annotations

import json

import click

from .base import load_settings, open_keys

@click.group()
def keys():
    """Create, list, revoke and top up caller API keys."""


@keys.command("create")
@click.option("--name", default="", help="A label for the key (who or what uses it).")
@click.option("--credits", type=click.IntRange(min=0), default=None, help="Credit balance; omit for no limit.")
@click.option("--rate-limit", type=click.IntRange(min=1), default=None, help="Requests per minute.")
def keys_create(name, credits, rate_limit):
    """Create a key; it is printed once, alone on the last line."""
    store = open_keys(load_settings())
    raw, row = store.create(name=name, credits=credits, rate_limit=rate_limit)
    limit = rate_limit or store.default_rate_limit
    click.echo(f"Created {row['id']} ({name or 'unnamed'}): credits "
               f"{'unlimited' if credits is None else credits}, {limit} requests/minute. "
               "Store the key now; only its hash is kept:")
    click.echo(raw)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def keys_list(as_json):
    """List keys (never the keys themselves), with credits and requests by requestSource."""
    store = open_keys(load_settings())
    rows = store.list()
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        click.echo("No keys. Create one with: connector keys create --name NAME")
        return
    click.echo(f"{'id':<17} {'prefix':<9} {'name':<20} {'credits':>9} {'rate/min':>8} {'status':<8} requests")
    for row in rows:
        status = "revoked" if row["revoked_at"] else "active"
        credits = "unlimited" if row["credits"] is None else row["credits"]
        rate = row["rate_limit"] or store.default_rate_limit
        usage = ", ".join(f"{k}={v}" for k, v in sorted(row["requests"].items())) or "-"
        click.echo(f"{row['id']:<17} {row['key_prefix']:<9} {row['name'][:20]:<20} {credits:>9} {rate:>8} "
                   f"{status:<8} {usage}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id):
    """Revoke a key by its id (see `connector keys list`)."""
    if not open_keys(load_settings()).revoke(key_id):
        raise click.ClickException(f"No active key with id {key_id}. See `connector keys list`.")
    click.echo(f"Revoked {key_id}.")


@keys.command("topup")
@click.argument("key_id")
@click.option("--credits", type=click.IntRange(min=1), required=True, help="Credits to add.")
def keys_topup(key_id, credits):
    """Add credits to a key; paused watches of the key resume at their next poll."""
    try:
        balance = open_keys(load_settings()).top_up(key_id, credits)
    except KeyError:
        raise click.ClickException(f"No key with id {key_id}. See `connector keys list`.") from None
    if balance is None:
        click.echo(f"{key_id} has no credit limit; nothing to add.")
    else:
        click.echo(f"{key_id} now has {balance} credits.")
