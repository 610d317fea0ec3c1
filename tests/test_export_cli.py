"""`connector export`: deterministic files, generated from the manifests alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from connector.export import make, openapi, zapier
from connector.manifests import load_manifests

MANIFESTS = Path(__file__).parents[1] / "manifests"


def export_all(out: Path, manifests_dir: Path) -> dict[str, bytes]:
    runner = CliRunner()
    for args in (["zapier", "--out", str(out / "zapier")], ["make", "--out", str(out / "make")],
                 ["openapi", "--out", str(out / "openapi.json")]):
        result = runner.invoke(main, ["export", *args, "--manifests", str(manifests_dir)])
        assert result.exit_code == 0, result.output
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_exports_are_byte_identical_run_to_run(tmp_path):
    first = export_all(tmp_path / "a", MANIFESTS)
    second = export_all(tmp_path / "b", MANIFESTS)
    assert first == second
    assert {"zapier/package.json", "zapier/index.js", "zapier/integration.json", "make/makecomapp.json",
            "openapi.json"} <= set(first)


def test_openapi_to_stdout(tmp_path):
    result = CliRunner().invoke(main, ["export", "openapi", "--manifests", str(MANIFESTS)])
    assert result.exit_code == 0
    assert json.loads(result.output)["openapi"] == "3.1.0"


def test_a_bad_manifest_is_a_clear_error(tmp_path):
    shutil.copytree(MANIFESTS, tmp_path / "m")
    (tmp_path / "m" / "get_profile.json").write_text("{")
    result = CliRunner().invoke(main, ["export", "openapi", "--manifests", str(tmp_path / "m")])
    assert result.exit_code == 1 and "get_profile.json: not valid JSON" in result.output


def test_a_new_action_manifest_reaches_every_export(tmp_path):
    """Adding an action is a manifest, not exporter code."""
    directory = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, directory)
    videos = json.loads((directory / "get_profile.json").read_text())
    videos.update(key="get_videos", label="Get Videos", noun="Video", route="/api/v1/get-tiktok-user-videos",
                  operation="get_videos",
                  description="Gets the latest public videos of a TikTok account with their statistics.")
    videos["platforms"] = {}  # no platform hints: the exporters use their defaults
    (directory / "get_videos.json").write_text(json.dumps(videos))
    manifests = load_manifests(directory)

    definition = zapier.build(manifests)
    assert definition["searches"]["get_videos"]["display"]["label"] == "Get Videos"
    assert "/api/v1/get-tiktok-user-videos" in definition["searches"]["get_videos"]["operation"]["perform"]["source"]
    app = make.build(manifests)
    assert app["makecomapp.json"]["components"]["module"]["getVideos"]["moduleType"] == "action"
    assert app["modules/getVideos/getVideos.communication.iml.json"]["url"] == "/api/v1/get-tiktok-user-videos"
    assert openapi.build(manifests)["paths"]["/api/v1/get-tiktok-user-videos"]["post"]["operationId"] == "get_videos"
    files = export_all(tmp_path / "out", directory)
    assert b"get-tiktok-user-videos" in files["zapier/integration.json"]
    assert "make/modules/getVideos/getVideos.communication.iml.json" in files
