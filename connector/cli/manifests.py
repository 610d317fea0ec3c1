"""``connector manifests check``: validate the manifests."""

from __future__ import annotations

import click

from ..manifests import ManifestError, load_manifests
from ..providers.contract import check_providers
from .base import load_settings

@click.group()
def manifests():
    """Check the manifests in manifests/."""


@manifests.command("check")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Folder to check (default: the service's manifests).")
def manifests_check(directory):
    """Validate every manifest against manifests/schema.json; exit 1 on the first error."""
    settings = load_settings()
    try:
        loaded = load_manifests(directory or settings.manifests_dir)
        check_providers(loaded)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    for key, manifest in loaded.items():
        click.echo(f"ok  {manifest.path.name:<22} {manifest.kind:<8} {manifest.route}")
    click.echo(f"{len(loaded)} manifests valid.")
