"""tiktok-connector: TikTok follower data for Zapier, Make.com and webhooks.

The service speaks the Dumpling AI contract for three actions (profile, followers,
following) over whichever provider is configured, and runs a New Follower trigger.
Start at :func:`connector.app.create_app`.
"""

__version__ = "0.1.0"
