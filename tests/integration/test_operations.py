"""Health, readiness, metrics, the OpenAPI document, and logs that never hold the API key."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from openapi_spec_validator import validate
from typing_extensions import TypedDict

from services.ingest.apidoc import Access, Answer, documented
from services.ingest.openapi import build_openapi
from shared.logging import configure_logging
from tests.conftest import API_KEY
from tests.crm_client import a_call, post_form, post_json
from tests.openapi_check import AnswerChecker

Client = TestClient[Any, Any]


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    yield stream
    configure_logging("info", "json")


async def test_health_and_readiness(ingest_client: Client) -> None:
    assert (await (await ingest_client.get("/healthz")).json()) == {"status": "ok"}
    ready = await ingest_client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"]["mongo"] == "ok"


async def test_metrics_count_requests_and_outcomes(ingest_client: Client) -> None:
    await post_json(ingest_client, a_call())
    await post_json(ingest_client, a_call(), key="wrong")
    await post_json(ingest_client, a_call(duration=-1))
    text = await (await ingest_client.get("/metrics")).text()
    assert 'rop_calls_accepted_total{status="success"} 1.0' in text
    assert 'rop_calls_rejected_total{code="unauthorized"} 1.0' in text
    assert 'rop_calls_rejected_total{code="invalid_request"} 1.0' in text
    assert 'rop_http_requests_total{method="POST",route="/api/v1/calls",status="200"} 1.0' in text
    assert "rop_http_request_duration_seconds_bucket" in text
    assert "rop_outbox_backlog" in text


async def test_openapi_document_is_valid_and_complete(ingest_client: Client) -> None:
    document = await (await ingest_client.get("/api/v1/openapi.json")).json()
    validate(document)
    paths = document["paths"]
    served = {
        route.resource.canonical
        for route in ingest_client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
    }
    assert served - set(paths) == set()  # every API route is documented
    for path, methods in paths.items():  # and every documented method is served
        for method in set(methods) - {"parameters"}:
            assert any(
                route.method == method.upper() and route.resource.canonical == path
                for route in ingest_client.app.router.routes()
                if route.resource is not None
            ), (method, path)
    assert set(paths["/api/v1/calls"]["post"]["responses"]) >= {"200", "400", "401", "409", "500"}
    json_schema = document["components"]["schemas"]["JsonCallSubmission"]
    assert set(json_schema["required"]) == {
        "call_id",
        "audio_url",
        "manager_id",
        "deal_id",
        "duration",
    }
    form_schema = document["components"]["schemas"]["CallSubmission"]
    assert "duration" not in form_schema["required"]


class Count(TypedDict):
    count: int


def test_an_api_route_cannot_be_served_undocumented() -> None:
    routes = web.RouteTableDef()

    @routes.get("/api/v1/forgotten")
    async def forgotten(_request: web.Request) -> web.Response:
        return web.json_response({})

    with pytest.raises(LookupError, match="GET /api/v1/forgotten"):
        build_openapi(routes)


async def test_answers_the_document_does_not_describe_are_caught() -> None:
    """The check every integration test's gateway runs under finds a wrong field, an
    undocumented status and an undocumented content type."""
    routes = web.RouteTableDef()

    @routes.get("/api/v1/count/{what}")
    @documented("Count", access=Access.PUBLIC, answers={200: Answer("OK", Count)})
    async def count(request: web.Request) -> web.Response:
        what = request.match_info["what"]
        if what == "teapot":
            return web.json_response({"count": 1}, status=418)
        if what == "text":
            return web.Response(text="1")
        return web.json_response({"count": 1 if what == "one" else "many"})

    checker = AnswerChecker(build_openapi(routes))
    app = web.Application(middlewares=[checker.middleware])
    app.router.add_routes(routes)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for what in ("one", "many", "teapot", "text"):
            await (await client.get(f"/api/v1/count/{what}")).read()
    assert checker.checked == 4
    assert checker.violations == [
        "GET /api/v1/count/{what} → 200: at /count: type: 'many' is not of type 'integer'",
        "GET /api/v1/count/{what} → 418: status not documented",
        "GET /api/v1/count/{what} → 200: text/plain not documented",
    ]


async def test_logs_are_json_and_never_hold_the_api_key(
    ingest_client: Client, log_lines: io.StringIO
) -> None:
    await post_json(ingest_client, a_call())
    await post_form(ingest_client, a_call(), "multipart")
    await ingest_client.post("/api/v1/calls", json=a_call(), headers={"X-API-Key": API_KEY})
    await ingest_client.get("/api/v1/calls/x", params={"apiKey": API_KEY, "x": "1"})
    output = log_lines.getvalue()
    records = [json.loads(line) for line in output.splitlines()]
    access = [r for r in records if r["event"] == "http_request"]
    assert len(access) == 4
    assert API_KEY not in output
    assert access[0]["path"] == "/api/v1/calls?apiKey=***"
    assert access[3]["path"] == "/api/v1/calls/x?apiKey=***&x=1"
    assert all(r["request_id"] for r in access)
    accepted = [r for r in records if r["event"] == "call_accepted"]
    assert len(accepted) == 3
    assert all(r["task_id"].startswith("task_") and r["call_id"] for r in accepted)


async def test_every_route_is_reached_by_its_own_paths(ingest_client: Client) -> None:
    """`…/new` is the form for a new one, not the one with the id `new`: among routes with
    parameters the order decides, and stacked route decorators register bottom up."""
    app = ingest_client.app
    checked = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD" or "{" not in resource.canonical:
            continue
        info = resource.get_info()
        names = info["pattern"].groupindex
        for value in ("templates", "x1"):  # a section, or any id
            path = info["formatter"].format(**dict.fromkeys(names, value))
            if info["pattern"].fullmatch(path):
                break
        match = await app.router.resolve(make_mocked_request(route.method, path, app=app))
        assert match.route.resource is resource, (route.method, resource.canonical, path)
        checked.append((route.method, resource.canonical))
    assert ("POST", "/settings/{section}/new") in checked
