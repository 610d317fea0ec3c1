"""The layers import downwards only: a provider can be used without the HTTP edge, the trigger's
tables or the database (a fresh interpreter shows what importing a module loads)."""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_by(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_importing_the_providers_loads_neither_the_http_edge_nor_the_trigger_nor_the_database():
    loaded = loaded_by("connector.providers")
    assert "connector.providers.dumpling" in loaded          # the check can see what it looks for
    ours = {m for m in loaded if m.startswith("connector.")}
    assert not {m for m in ours if m.startswith(("connector.api", "connector.trigger", "connector.store",
                                                 "connector.app", "connector.metrics_server"))}, sorted(ours)
    assert not {m for m in loaded if m.split(".")[0] in ("flask", "werkzeug", "sqlalchemy")}
