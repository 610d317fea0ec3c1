"""The baseline: a minimal Flask passthrough proxy to the upstream, a dozen lines.

Fair to it: served by gunicorn with the same (Procfile) settings as the connector, one
``httpx.Client`` reused for every request (keep-alive pool of the same size as the
connector's), the body forwarded as bytes and the upstream's bytes returned unparsed. It
does none of the connector's work: no caller key, no validation, no records, no JSON.
"""

import os

import httpx
from flask import Flask, Response, request

app = Flask(__name__)
client = httpx.Client(base_url=os.environ["DUMPLING_BASE_URL"], timeout=30,
                      limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                      headers={"Authorization": f"Bearer {os.environ['DUMPLING_API_KEY']}"})


@app.post("/api/v1/<path:route>")
def proxy(route):
    upstream = client.post(f"/api/v1/{route}", content=request.get_data(),
                           headers={"Content-Type": "application/json"})
    return Response(upstream.content, upstream.status_code, content_type="application/json")
