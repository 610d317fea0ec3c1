"""``connector simulate``: what a fleet would cost, and how late its followers would be seen, under each policy."""

from __future__ import annotations

import json

import click

from ..trigger.fleet import FleetError, load_fleet
from ..trigger.simulate import simulate_policies
from .base import load_settings


class BadFleet(click.ClickException):
    exit_code = 2     # (as click's usage errors: the input is wrong, not the run)


COLUMNS = (("upstreamRequests", "upstream reads", "{:,}"), ("events", "events", "{:,}"),
           ("missed", "missed", "{}"), ("duplicates", "duplicates", "{}"), ("delayMean", "mean delay s", "{:.0f}"),
           ("delayP50", "p50 s", "{:.0f}"), ("delayP95", "p95 s", "{:.0f}"), ("delayP99", "p99 s", "{:.0f}"),
           ("worstWatchP95", "worst watch p95 s", "{:.0f}"), ("wallSeconds", "wall s", "{:.1f}"))


@click.command("simulate")
@click.option("--fleet", "fleet_path", required=True, type=click.Path(dir_okay=False),
              help='Fleet file: {"start", "days", "watches": [{"handle", "initialFollowers", "followers": [s, ...]}]}.')
@click.option("--policy", type=click.Choice(["fixed", "adaptive", "both"]), default="both", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object keyed by policy.")
def simulate_command(fleet_path, policy, as_json):
    """Replay a fleet under a virtual clock through the poller's scheduling and detection."""
    settings = load_settings()
    try:
        with open(fleet_path, "rb") as handle:
            fleet = load_fleet(handle.read(), fleet_path)
    except OSError as exc:
        raise BadFleet(f"Cannot read {fleet_path}: {exc.strerror or exc}.") from None
    except FleetError as exc:
        raise BadFleet(str(exc)) from None
    policies = ["fixed", "adaptive"] if policy == "both" else [policy]
    results = simulate_policies(fleet, settings, policies)
    if as_json:
        click.echo(json.dumps(results))
        return
    click.echo(f"{len(fleet.watches)} watches over {fleet.days:g} days; CONNECTOR_POLL_INTERVAL "
               f"{settings.poll_interval}s, adaptive bounds {settings.poll_min_interval}-{settings.poll_max_interval}s")
    width = max(len(label) for _, label, _ in COLUMNS)
    click.echo(" " * width + "".join(f"{name:>14}" for name in policies))
    for key, label, form in COLUMNS:
        click.echo(f"{label:<{width}}" + "".join(f"{form.format(results[name][key]):>14}" for name in policies))
    if len(policies) == 2 and results["fixed"]["upstreamRequests"]:
        ratio = results["adaptive"]["upstreamRequests"] / results["fixed"]["upstreamRequests"]
        click.echo(f"adaptive reads {ratio:.2f}x what fixed reads")
