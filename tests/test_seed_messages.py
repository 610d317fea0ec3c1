"""Every error message of the Dumpling seed documents (``../shared/seeds/dumpling-*.txt``), word for
word, with the seed's status: what the service answers, and what each manifest's error table says.

The messages are copied here from the seeds so that a change to a manifest, to request
validation or to the status table that alters one of them fails this test.
"""

from __future__ import annotations

import pytest

from connector.api.errors import UPSTREAM_STATUS
from connector.config import Settings
from connector.manifests import load_manifests

ROUTES = {"get_profile": "/api/v1/get-tiktok-profile", "list_followers": "/api/v1/get-tiktok-user-followers",
          "list_following": "/api/v1/get-tiktok-user-following"}
NOUN = {"get_profile": "profile", "list_followers": "followers", "list_following": "following"}

# Said by the service whatever the action: (status, message).
COMMON = [
    (400, "Invalid JSON in request body"),
    (400, "'handle' parameter is required and must be a non-empty string."),
    (401, "API key is invalid or missing."),
    (403, "Insufficient credits. Please top up your account."),
    (500, "Service not configured. Please contact support."),
    (500, "Service authentication failed. Please contact support."),
]
# Each action's upstream failures: error kind -> (status, the seed's message).
SEED = {
    "get_profile": {
        "could_not_process": (400, "The profile service could not process the handle."),
        "reported_issue": (400, "The profile service reported an issue."),
        "not_found": (404, "TikTok profile not found for handle: {handle}"),
        "not_configured": (500, "Service not configured. Please contact support."),
        "auth_failed": (500, "Service authentication failed. Please contact support."),
        "unexpected": (500, "An unexpected server error occurred while fetching the TikTok profile: {detail}"),
        "unavailable": (502, "The profile service is currently unavailable."),
        "invalid_data": (502, "Received invalid data format from profile service."),
        "fetch_error": (502, "Error fetching profile data from the upstream service."),
        "rate_limited": (503, "Rate limit exceeded with the profile service. Please try again later."),
    },
    "list_followers": {
        "could_not_process": (400, "The followers service could not process the handle."),
        "reported_issue": (400, "The followers service reported an issue."),
        "not_found": (404, "Followers list not found for user: {handle}"),
        "not_configured": (500, "Service not configured. Please contact support."),
        "auth_failed": (500, "Service authentication failed. Please contact support."),
        "unexpected": (500, "An unexpected server error occurred while fetching the TikTok user followers: {detail}"),
        "unavailable": (502, "The followers service is currently unavailable."),
        "invalid_data": (502, "Received invalid data structure from followers service."),
        "fetch_error": (502, "Error fetching followers data from the upstream service."),
        "rate_limited": (503, "Rate limit exceeded. Please try again later."),
    },
    "list_following": {
        "could_not_process": (400, "The following service could not process the handle."),
        "reported_issue": (400, "The following service reported an issue."),
        "not_found": (404, "Following list not found for user: {handle}"),
        "not_configured": (500, "Service not configured. Please contact support."),
        "auth_failed": (500, "Service authentication failed. Please contact support."),
        "unexpected": (500, "An unexpected server error occurred while fetching the TikTok user following: {detail}"),
        "unavailable": (502, "The following service is currently unavailable."),
        "invalid_data": (502, "Received invalid data structure from following service."),
        "fetch_error": (502, "Error fetching following data from the upstream service."),
        "rate_limited": (503, "Rate limit exceeded. Please try again later."),
    },
}
# The demo provider's handles that make its upstream fail with a kind (connector/providers/demo.py).
DEMO_FAILS = {"could_not_process": "demo_unprocessable", "not_found": "demo_missing", "auth_failed": "demo_authfail",
              "unavailable": "demo_unavailable", "invalid_data": "demo_invalid", "rate_limited": "demo_ratelimited"}


@pytest.mark.parametrize("action", sorted(SEED))
def test_each_manifest_says_the_seeds_words_with_the_seeds_status(action):
    manifest = load_manifests(Settings().manifests_dir)[action]
    for kind, (status, message) in SEED[action].items():
        assert manifest.errors[kind] == message, kind
        assert UPSTREAM_STATUS[kind] == status, kind


@pytest.mark.parametrize("action", sorted(SEED))
def test_the_service_answers_each_seed_message_it_can_be_made_to(action, demo, serve, make_settings):
    route = ROUTES[action]
    answers = {
        "Invalid JSON in request body": demo.http.post(route, content=b"{", headers={"Content-Type": "application/json"}),
        "'handle' parameter is required and must be a non-empty string.": demo.post(route, {}),
        "API key is invalid or missing.": demo.http.post(route, json={"handle": "abc"}, headers={"Authorization": ""}),
    }
    broke, _ = demo.services.keys.create(name="broke", credits=0)
    answers["Insufficient credits. Please top up your account."] = demo.post(
        route, {"handle": "abc"}, headers={"Authorization": f"Bearer {broke}"})
    for kind, handle in DEMO_FAILS.items():
        answers[SEED[action][kind][1].format(handle=handle, detail="")] = demo.post(route, {"handle": handle})
    unconfigured = serve(make_settings(provider=None))
    raw, _ = unconfigured.services.keys.create(name="tests")
    with unconfigured.client(raw) as http:
        answers["Service not configured. Please contact support."] = http.post(route, json={"handle": "abc"})
    statuses = {message: status for status, message in COMMON}
    statuses.update({message.format(handle=DEMO_FAILS.get(kind, ""), detail=""): status
                     for kind, (status, message) in SEED[action].items()})
    for message, r in answers.items():
        assert r.status_code == statuses[message], (message, r.text)
        assert r.json()["error"].startswith(message), (message, r.text)   # the seed's sentence comes first
