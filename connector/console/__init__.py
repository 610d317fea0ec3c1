"""The operator console at ``/console/``: every watch, hook and key, replay, an account's growth.

Server-rendered pages for whoever runs the connector (never its callers), part of the same
Flask app and off unless ``CONNECTOR_ADMIN_KEY`` is set. Each concern has its module:

    auth.py       signing in with the admin key, server-side sessions, the sign-in throttle, CSRF
    queries.py    the read queries: one page of rows plus grouped extras for that page
    chart.py      an account's growth as a server-drawn SVG
    views.py      the blueprint: pages and forms; changes go through the trigger's functions
    templates/    Jinja templates (autoescaped); static/ the one stylesheet
"""

from .views import bp

__all__ = ["bp"]
