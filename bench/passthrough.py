"""The baseline: a minimal Flask passthrough proxy to the upstream, a dozen lines."""

import os

import httpx
from flask import Flask, Response, request

app = Flask(__name__)
client = httpx.Client(base_url=os.environ["DUMPLING_BASE_URL"], timeout=30,
                      headers={"Authorization": f"Bearer {os.environ['DUMPLING_API_KEY']}"})


@app.post("/api/v1/<path:route>")
def proxy(route):
    upstream = client.post(f"/api/v1/{route}", content=request.get_data(),
                           headers={"Content-Type": "application/json"})
    return Response(upstream.content, upstream.status_code, content_type="application/json")
