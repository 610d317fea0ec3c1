"""First end-to-end check of the core over real HTTP on the demo provider."""


def test_demo_followers_page(demo):
    r = demo.post("/api/v1/get-tiktok-user-followers", {"handle": "@stoolpresidente", "count": 3})
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["followers", "maxCursor", "minCursor", "hasMore", "total"]
    assert len(body["followers"]) == 3
    assert r.headers["X-RateLimit-Limit"] == "120"
