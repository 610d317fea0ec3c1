"""``connector export zapier|make|openapi``: write the exports of the service's manifests."""

from __future__ import annotations

from pathlib import Path

import click

from ..export import EXPORTERS
from ..manifests import ManifestError, load_manifests
from .base import load_settings

MANIFESTS_OPTION = click.option("--manifests", "manifests_dir", type=click.Path(file_okay=False), default=None,
                                help="Manifests folder (default: the service's).")


def _load(manifests_dir):
    if manifests_dir is None:
        manifests_dir = load_settings().manifests_dir
    try:
        return load_manifests(manifests_dir)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None


def _write_tree(files: dict[str, str], out: Path) -> None:
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {len(files)} files to {out}")


@click.group("export")
def export():
    """Write the Zapier integration, the Make app or the OpenAPI document."""


def _tree_command(name: str, folder_help: str, doc: str):
    """``connector export zapier|make``: the exporter's files into a folder."""
    @export.command(name, help=doc)
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help=folder_help)
    @MANIFESTS_OPTION
    def command(out, manifests_dir):
        _write_tree(EXPORTERS[name].render(_load(manifests_dir)), out)
    return command


export_zapier = _tree_command("zapier", "Folder for package.json, index.js, integration.json and test/.",
                              "A Zapier CLI integration (push it with `zapier-platform push`).")
export_make = _tree_command("make", "Folder for the Make app (makecomapp.json and its files).",
                            "A Make custom app in the Apps SDK local-development layout.")


@export.command("openapi")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
@MANIFESTS_OPTION
def export_openapi(out, manifests_dir):
    """The OpenAPI 3.1 document."""
    text = EXPORTERS["openapi"].render(_load(manifests_dir))
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {out}")
