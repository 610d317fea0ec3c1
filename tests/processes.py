"""Helpers for tests that run the `connector` command as real processes: a clean environment,
a free port, waiting for a server to answer, and reading a Prometheus scrape."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

CLI = [sys.executable, "-m", "connector.cli"]


def clean_env(database_url: str, **extra: str) -> dict:
    """This environment without the connector's own variables (and PORT), on ``database_url``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONNECTOR_", "DUMPLING_", "SOCIALFETCH_", "TIKTOK_", "PROMETHEUS_"))
           and k != "PORT"}
    env.update(CONNECTOR_DATABASE_URL=database_url, **extra)
    return env


def run(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``grace`` seconds; reaped either way."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> httpx.Response:
    """The first answer from ``url``; fails at once if ``proc`` (the server) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else proc.returncode
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def sample(text: str, name: str, **labels) -> float:
    """The sum of ``name``'s samples in a scrape whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
