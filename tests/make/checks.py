"""What Make's editor checks in ``makecomapp.json`` beyond its JSON Schema.

Component ids have fixed formats, and every connection, alternative connection and webhook a
component names must exist among the app's components. ``problems(makecomapp)`` lists what
Make would refuse, one sentence each; an empty list means none.
"""

from __future__ import annotations

import re

APP_ID = re.compile(r"^[a-z][0-9a-z-]{1,28}[0-9a-z]$")
MODULE_OR_RPC_ID = re.compile(r"^[a-zA-Z][0-9a-zA-Z]{2,63}$")
CONNECTION_OR_WEBHOOK_ID = re.compile(r"^[a-zA-Z][0-9a-zA-Z-]{1,33}[0-9a-zA-Z]$")

ID_FORMATS = {"module": MODULE_OR_RPC_ID, "rpc": MODULE_OR_RPC_ID,
              "connection": CONNECTION_OR_WEBHOOK_ID, "webhook": CONNECTION_OR_WEBHOOK_ID}
# Which property names which kind of component.
REFERENCES = {"connection": "connection", "altConnection": "connection", "webhook": "webhook"}


def problems(makecomapp: dict) -> list[str]:
    found = []
    components = makecomapp.get("components", {})
    for origin in makecomapp.get("origins", []):
        app_id = origin.get("appId", "")
        if not APP_ID.match(app_id):
            found.append(f"origin app id {app_id!r} does not match {APP_ID.pattern}")
    for kind, pattern in ID_FORMATS.items():
        for name in components.get(kind, {}):
            if not pattern.match(name):
                found.append(f"{kind} id {name!r} does not match {pattern.pattern}")
    for kind, members in components.items():
        for name, component in members.items():
            for prop, target in REFERENCES.items():
                ref = component.get(prop)
                if ref is not None and ref not in components.get(target, {}):
                    found.append(f"{kind} {name!r} names {prop} {ref!r}, which is not a {target} of the app")
    return found
