"""Manifests load once, are validated against schema.json, and stop start-up when wrong."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from connector.app import create_app
from connector.config import MANIFESTS_DIR, Settings
from connector.manifests import ManifestError, load_manifests


def test_the_shipped_schema_is_a_valid_json_schema_and_every_manifest_loads():
    schema = json.loads((MANIFESTS_DIR / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    manifests = load_manifests(MANIFESTS_DIR)
    files = sorted(path.stem for path in MANIFESTS_DIR.glob("*.json") if path.name != "schema.json")
    assert sorted(manifests) == files                                  # every file, and nothing else
    assert {"get_profile", "list_followers", "list_following", "new_follower"} <= set(manifests)
    assert all(m.cost >= 1 for m in manifests.values())


def test_every_sample_matches_its_output_fields():
    """The samples exported to Zapier and Make carry every output field a user can map."""
    for manifest in load_manifests(MANIFESTS_DIR).values():
        output = manifest.output
        targets = [(manifest.sample, output["fields"])]
        if "list" in output:
            targets.append((manifest.sample[output["list"]][0], output["itemFields"]))
        for sample, fields in targets:
            for field in fields:
                node = sample
                for part in field["key"].split("."):
                    assert isinstance(node, dict) and part in node, (manifest.key, field["key"])
                    node = node[part]


@pytest.fixture
def broken(tmp_path):
    target = tmp_path / "manifests"
    shutil.copytree(MANIFESTS_DIR, target)
    return target


def edit(path: Path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change,expected", [
    (lambda d: d.pop("cost"), "list_followers.json: (top level): 'cost' is a required property"),
    (lambda d: d["inputs"][0].update(type="float"), "list_followers.json: inputs/0/type: 'float' is not one of"),
    (lambda d: d.update(route="not-a-route"), "list_followers.json: route: 'not-a-route' does not match"),
    (lambda d: d["inputs"].append(dict(d["inputs"][0])), "list_followers.json: inputs/4/key: duplicate input 'handle'"),
    (lambda d: d.update(key="other"), "list_followers.json: key: 'other' must match the file name"),
    (lambda d: d["errors"].update(not_found="Not found: {user}"), "list_followers.json: errors/not_found"),
    (lambda d: d.update(route="/api/v1/get-tiktok-profile"), "route: /api/v1/get-tiktok-profile is already used"),
])
def test_a_bad_manifest_names_the_file_and_field(broken, change, expected):
    edit(broken / "list_followers.json", change)
    with pytest.raises(ManifestError) as info:
        load_manifests(broken)
    assert expected in str(info.value)


def test_invalid_json_manifest(broken):
    (broken / "get_profile.json").write_text("{ nope")
    with pytest.raises(ManifestError, match="get_profile.json: not valid JSON"):
        load_manifests(broken)


def test_start_up_fails_fast_on_a_bad_manifest(broken, tmp_path):
    edit(broken / "get_profile.json", lambda d: d.pop("inputs"))
    with pytest.raises(ManifestError, match="get_profile.json"):
        create_app(Settings(provider="demo", database_url=f"sqlite:///{tmp_path}/x.db", manifests_dir=broken))


def test_manifests_check_command(broken):
    ok = subprocess.run([sys.executable, "-m", "connector.cli", "manifests", "check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    shipped = len([p for p in MANIFESTS_DIR.glob("*.json") if p.name != "schema.json"])
    assert f"{shipped} manifests valid." in ok.stdout
    edit(broken / "list_following.json", lambda d: d["inputs"][1].update(minimum="one"))
    bad = subprocess.run([sys.executable, "-m", "connector.cli", "manifests", "check", "--dir", str(broken)],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "list_following.json: inputs/1/minimum: 'one' is not of type 'integer'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_validation_follows_the_manifest(broken, tmp_path):
    """Changing a bound in the manifest changes what the service accepts: no per-route code."""
    edit(broken / "list_followers.json", lambda d: d["inputs"][2].update(maximum=5,
                                                                       help="At most 5."))
    manifests = load_manifests(broken)
    from connector.errors import BadRequest
    with pytest.raises(BadRequest, match="from 1 to 5"):
        manifests["list_followers"].parse({"handle": "a", "count": 6})
    assert manifests["list_followers"].parse({"handle": "a", "count": 5})["count"] == 5
