"""Every command in the README and the guides (docs/providers, deployment, zapier, make,
operations, api, benchmarks) is run here, against a real ``connector serve --demo``, or says
why it cannot be.

A ```bash block preceded by ``<!-- not run: REASON -->`` is not run and must give its reason (a
Zapier or Make account, root, a command another test runs). Every other block runs line by
line, as a reader would type it, in a temporary folder whose ``instance/connector.db`` is the
demo's database: ``127.0.0.1:8000`` is the demo's port, ``9000`` a free port for the receiver,
``whsec_…`` and ``hook_…`` the secret and id the previous commands printed, ``$KEY`` the key the
demo printed. ``curl`` fails on an HTTP error; a command must exit 0. Long-running commands
(``connector receive``) run in the background until the block ends; ``connector serve --demo``
is the demo already running; ``pip install`` lines are checked, not run (they would change the
environment the tests run in): the README's test command is the one ``.ci/run`` runs. The
README's first webhook must arrive at its receiver, signature verified.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import clean_env, free_port, stop, wait_up

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ("README.md", "docs/providers.md", "docs/deployment.md", "docs/zapier.md", "docs/make.md",
          "docs/operations.md", "docs/api.md", "docs/benchmarks.md")
BLOCK = re.compile(r"(?:<!-- (not run[^>]*?) -->\n)?```bash\n(.*?)```", re.S)
EXTRAS = ("-e .", "-e '.[test]'", "-e '.[postgres]'")


def blocks(doc: str) -> list[tuple[str | None, str]]:
    return [(note or None, body) for note, body in BLOCK.findall((ROOT / doc).read_text())]


def commands(body: str) -> list[str]:
    """The block's commands: continuation lines joined, comments dropped."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        line = line.split("  # ", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def test_every_guide_has_commands_and_every_skipped_block_says_why():
    runnable = 0
    for doc in GUIDES:
        found = blocks(doc)
        assert found, f"{doc} has no ```bash block"
        for note, body in found:
            assert commands(body), f"an empty bash block in {doc}"
            if note is None:
                runnable += 1
            else:
                assert re.fullmatch(r"not run( here)?: .{20,}", note), f"{doc}: {note!r} does not say why"
    assert runnable >= 12


def test_the_readme_starts_with_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    first = commands(blocks("README.md")[0][1])
    assert first == ["pip install -e . && connector serve --demo", "pip install -e '.[test]' && python -m pytest"]
    assert readme.index(first[0]) < readme.index("## ")           # before any section
    assert first[1] in (ROOT / ".ci" / "run").read_text().splitlines()
    assert len(readme.splitlines()) <= 120


def test_the_demo_pace_the_guides_state_is_the_demo_providers():
    from connector.providers.demo import DemoProvider
    pace = DemoProvider._interval("stoolpresidente", "followers")
    for doc in ("README.md", "docs/providers.md"):
        assert re.search(rf"@stoolpresidente (gains a follower )?every {pace} seconds", (ROOT / doc).read_text()), doc
    assert f"gains a follower every {pace} s" in (ROOT / "connector" / "cli" / "serve.py").read_text()


def test_the_readme_names_only_triggers_there_are():
    import json
    manifests = [json.loads(p.read_text()) for p in (ROOT / "manifests").glob("*.json") if p.name != "schema.json"]
    labels = {m["label"] for m in manifests if m.get("kind") == "trigger"}
    intro = (ROOT / "README.md").read_text().split("```", 1)[0]
    named = set(re.findall(r"\*\*(New [A-Z][a-z]+|[A-Z][a-z]+ Follower|Follower [A-Z][a-z]+)\*\*", intro))
    assert named == labels, (named, labels)   # every trigger there is, and never one that is not


def test_the_readme_links_only_to_files_that_exist():
    for doc in GUIDES:
        for target in re.findall(r"\]\((?!https?://|#)([^)#]+)", (ROOT / doc).read_text()):
            assert (ROOT / doc).parent.joinpath(target).resolve().exists(), f"{doc} links to missing {target}"


class Reader:
    """Runs a guide's commands as a reader would, against the demo."""

    def __init__(self, folder: Path, env: dict, port: int):
        self.folder, self.env, self.port = folder, env, port
        self.secret = self.hook = None
        self.background: list[tuple[str, subprocess.Popen, Path]] = []
        self.receiver_port = free_port()

    def substitute(self, line: str) -> str:
        line = line.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
        line = line.replace("127.0.0.1:9000", f"127.0.0.1:{self.receiver_port}")
        line = line.replace("--port 9000", f"--port {self.receiver_port}")
        if "whsec_…" in line:
            assert self.secret, "no earlier command printed a whsec_ secret"
            line = line.replace("whsec_…", self.secret)
        if "hook_…" in line:
            assert self.hook, "no earlier command printed a hook id"
            line = line.replace("hook_…", self.hook)
        if line.startswith("curl "):
            line = "curl --fail-with-body " + line[5:]
        return line

    def run(self, line: str, doc: str) -> None:
        for part in line.split(" && "):
            if part.startswith("pip install "):
                assert part[len("pip install "):] in EXTRAS, f"{doc}: unknown install {part!r}"
                continue
            if part == "python -m pytest":
                continue        # the whole suite: .ci/run runs it (checked above)
            if part == "connector serve --demo":
                continue        # the demo this test started with exactly that command
            command = self.substitute(part)
            if command.startswith("connector receive"):
                log = self.folder / f"receiver-{len(self.background)}.log"
                with open(log, "w") as out:
                    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.folder, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)
                self.background.append((command, proc, log))
                time.sleep(1)
                assert proc.poll() is None, f"{doc}: {command} exited: {log.read_text()}"
                continue
            done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=self.folder, env=self.env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{doc}: {command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            found = re.search(r'"secret":\s*"(whsec_[^"]+)"', done.stdout)
            self.secret = found.group(1) if found else self.secret
            found = re.search(r'"id":\s*"(hook_[^"]+)"', done.stdout)
            self.hook = found.group(1) if found else self.hook

    def stop(self) -> None:
        for _, proc, _ in self.background:
            stop(proc, 10)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reader")
    (folder / "instance").mkdir()
    shim = folder / "bin"
    shim.mkdir()
    (shim / "connector").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m connector.cli "$@"\n')
    (shim / "connector").chmod(0o755)
    env = clean_env(f"sqlite:///{folder / 'instance' / 'connector.db'}",
                    PATH=f"{shim}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    PYTHONPATH=str(ROOT))
    port, log = free_port(), folder / "serve.log"
    with open(log, "w") as out:   # a file, not a pipe: the access log must never block the server
        server = subprocess.Popen([*shlex.split("connector serve --demo"), "--port", str(port)], cwd=folder,
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_up(f"http://127.0.0.1:{port}/healthz", server, timeout=60)
        found = re.search(r"export KEY=(\S+)", log.read_text())
        assert found, f"connector serve --demo printed no key: {log.read_text()}"
        yield folder, dict(env, KEY=found.group(1)), port
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize("doc", GUIDES)
def test_the_guides_commands_run(demo, doc):
    folder, env, port = demo
    for note, body in blocks(doc):
        if note is not None:
            continue
        reader = Reader(folder, env, port)
        try:
            for line in commands(body):
                reader.run(line, doc)
            for command, proc, log in reader.background:
                if doc == "README.md" and command.startswith("connector receive"):
                    # The README's first webhook: a new follower of the demo account, delivered
                    # to this receiver and verified with the hook's secret.
                    deadline = time.monotonic() + 150
                    while time.monotonic() < deadline and "signature verified" not in log.read_text():
                        assert proc.poll() is None, log.read_text()
                        time.sleep(1)
                    assert re.search(r"OK\s+new_follower evt_\S+: @\S+ followed @stoolpresidente .*signature verified",
                                     log.read_text()), log.read_text()
        finally:
            reader.stop()
