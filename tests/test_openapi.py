"""``/openapi.json`` describes exactly the HTTP routes the app has (static files and WebSockets aside)."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Route

from hushgate.server.app import create_app
from hushgate.server.settings import Settings
from tests.conftest import serve

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def test_every_route_is_described_and_nothing_else() -> None:
    app = create_app(Settings())
    routes = {
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path), m.lower())
        for r in app.routes
        if isinstance(r, Route)
        for m in (r.methods or ())
        if m != "HEAD"
    }
    assert ("/v1/audio/transcriptions", "post") in routes and ("/v1/models/{model}", "get") in routes
    with serve(Settings(translators=(), synthesizers=(), speaker_encoder="")) as running:
        document = httpx.get(running.http + "/openapi.json").json()
    described = {
        (path, method) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert described == routes, (sorted(routes - described), sorted(described - routes))
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary") and operation.get("responses"), (path, method)
