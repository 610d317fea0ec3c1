"""The ``connector`` command. Each command lives in a module of its own; this package is the
only place that words errors for a terminal. Nothing below it imports from it."""

from __future__ import annotations

from .base import main
from .check import check
from .db import db
from .export import export
from .followers import followers_command
from .keys import keys
from .manifests import manifests
from .receive import receive
from .serve import serve
from .simulate import simulate_command
from .worker import poll_command

for command in (serve, keys, db, manifests, poll_command, export, followers_command, check, receive,
                simulate_command):
    main.add_command(command)

__all__ = ["main"]
