"""gunicorn settings for the Procfile's ``web:`` process (``gunicorn -c python:connector.gunicorn_conf``).

What ``connector serve`` does for its own gunicorn, for a plain gunicorn start: the workers'
metrics add up through one multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``, else a folder
per port under the instance folder, emptied at start), exited workers are marked dead, and
gunicorn's control socket lives in the instance folder rather than a shared home folder, and
requests are logged to stdout.
The command line's ``--workers``, ``--threads``, ``--bind`` and the rest still apply.
"""

from __future__ import annotations

import os
from pathlib import Path

from connector import metrics
from connector.cli.serve import control_socket as _socket_path
from connector.cli.serve import resolve_port as _resolve_port
from connector.services import instance_path

_port = _resolve_port(None)
_given = os.environ.get(metrics.MULTIPROC_ENV)
metrics.use_multiprocess_dir(Path(_given) if _given else instance_path() / "metrics" / str(_port),
                             wipe=not _given)

# One line per request on stdout (journald under systemd); its address is the client's own
# behind nginx when CONNECTOR_TRUSTED_PROXIES is set (the app then rewrites REMOTE_ADDR).
accesslog = "-"

_ctl = _socket_path(_port)
if _ctl is None:
    control_socket_disable = True
else:
    control_socket = str(_ctl)   # gunicorn reads this module's public names as its settings


def child_exit(_server, worker):
    metrics.mark_dead(worker.pid)
