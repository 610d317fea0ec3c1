"""``connector receive``: a tiny webhook receiver that prints each delivery and checks its signature.

For trying hooks on one machine (``connector serve --demo`` allows loopback targets):
every ``POST`` is answered 204 and printed as one line, with whether its Standard Webhooks
signature matches ``--secret`` (the hook's ``whsec_`` secret). A delivery whose signature does
not match is answered 401, so the sender retries it, as a receiver checking signatures would.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click

from ..trigger.signing import SECRET_PREFIX, sign

MAX_BODY = 1024 * 1024


def check_secret(secret: str | None) -> str | None:
    if secret is None:
        return None
    secret = secret.strip()
    try:
        ok = secret.startswith(SECRET_PREFIX) and len(base64.b64decode(secret[len(SECRET_PREFIX):],
                                                                      validate=True)) >= 16
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise click.BadParameter("must be the hook's secret as its creation answered it: whsec_ and base64.",
                                 param_hint="--secret")
    return secret


def verdict(secret: str | None, headers, body: bytes) -> tuple[bool | None, str]:
    """(signature ok, or None when not checked; the words for it)."""
    if secret is None:
        return None, "signature not checked (start with --secret whsec_... to check it)"
    msg_id, stamp, given = (headers.get(h) or "" for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp.isdigit() and given):
        return False, "UNSIGNED: the webhook-id, webhook-timestamp or webhook-signature header is missing"
    try:
        expected = sign(secret, msg_id, int(stamp), body.decode("utf-8"))
    except UnicodeDecodeError:
        return False, "BAD SIGNATURE: the body is not UTF-8"
    if any(hmac.compare_digest(expected, part.strip()) for part in given.split(" ")):
        return True, "signature verified"
    return False, "BAD SIGNATURE: signed with another secret, or changed on the way"


def summary(body: bytes) -> str:
    try:
        event = json.loads(body)
        follower = event["follower"]
        return (f"{event['event']} {event['id']}: @{follower.get('uniqueId')} followed @{event['handle']} "
                f"(detected {event.get('detectedAt')})")
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{len(body)} bytes: {body[:120].decode('utf-8', 'replace')}"


def make_server(host: str, port: int, secret: str | None, echo=click.echo) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "connector-receive"

        def log_message(self, *args):   # one line per delivery instead, below
            pass

        def _answer(self, status: int, text: str = "") -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            self._answer(200, "connector receive: POST webhook deliveries here.\n")

        do_HEAD = do_GET

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                return self._answer(411, "Send a Content-Length.\n")
            if not 0 <= length <= MAX_BODY:
                return self._answer(413, f"At most {MAX_BODY} bytes.\n")
            body = self.rfile.read(length)
            ok, words = verdict(secret, self.headers, body)
            with lock:
                echo(f"{'OK ' if ok else ('BAD' if ok is False else '-- ')} {summary(body)}: {words}")
            self._answer(401 if ok is False else 204)

    return ThreadingHTTPServer((host, port), Handler)


@click.command("receive")
@click.option("--port", type=click.IntRange(1, 65535), default=9000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--secret", default=None, help="The hook's whsec_ secret: deliveries are checked against it.")
def receive(port, host, secret):
    """Print webhook deliveries POSTed to HOST:PORT, checking their signatures with --secret."""
    secret = check_secret(secret)
    try:
        server = make_server(host, port, secret)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(f"Port {port} on {host} is already in use; choose another with "
                                       f"--port (and use it in the hook's targetUrl).") from None
        if isinstance(exc, socket.gaierror):
            raise click.ClickException(f"--host {host[:100]!r} is not an address of this machine.") from None
        raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    click.echo(f"Receiving webhooks on http://{host}:{port}/ ; Ctrl-C stops.", err=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
