"""Every API answer a test provokes, checked against the OpenAPI document: its status is
one the operation lists, and its JSON matches the documented schema. The gateway of the
integration tests runs with this as its outermost middleware, so the document is held to
real answers (analysed calls, cards with transcripts, deliveries with attempts), not only
to what a fuzzer reaches on an empty database."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator

from services.ingest.edge import Handler
from services.ingest.intake.submission import JSON_TYPE, media_type


class AnswerChecker:
    """Collects what real answers break of the document; `violations` should stay empty."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.violations: list[str] = []
        self.checked = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        self.check(request, response)
        return response

    def check(self, request: web.Request, response: web.StreamResponse) -> None:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else ""
        operation = self.document["paths"].get(path, {}).get(request.method.lower())
        if operation is None:
            return  # not an API route (pages), or no route at all
        self.checked += 1
        where = f"{request.method} {path} → {response.status}"
        documented = operation["responses"].get(str(response.status))
        if documented is None:
            self.violations.append(f"{where}: status not documented")
            return
        if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
            return  # streamed (audio)
        content_type = media_type(response.headers.get("Content-Type", ""))
        if content_type not in documented.get("content", {}):
            self.violations.append(f"{where}: {content_type} not documented")
            return
        if content_type != JSON_TYPE:
            return
        schema = documented["content"][JSON_TYPE]["schema"]
        for problem in schema_errors(self.document, schema, json.loads(response.body)):
            self.violations.append(f"{where}: {problem}")


def schema_errors(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    """Where `instance` breaks `schema` (which may refer to the document's components)."""
    # The schemas refer to `#/components/...`: carry them along as the root's.
    validator = Draft202012Validator({**schema, "components": document["components"]})
    problems = []
    for error in validator.iter_errors(instance):
        while error.context:  # anyOf/oneOf: what was wrong in the branch that got furthest
            error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        place = "/".join(str(part) for part in error.absolute_path)
        problems.append(f"at /{place}: {error.validator}: {error.message[-300:]}")
    return problems


def component_errors(document: dict[str, Any], name: str, instance: Any) -> list[str]:
    """Where `instance` breaks the document's schema `name`."""
    return schema_errors(document, {"$ref": f"#/components/schemas/{name}"}, instance)


def webhook_errors(document: dict[str, Any], body: bytes) -> list[str]:
    """Where a webhook body the system sent breaks the document's `webhooks`."""
    sent = json.loads(body)
    webhook = document["webhooks"].get(sent.get("type"))
    if webhook is None:
        return [f"a webhook of no documented type: {sent.get('type')!r}"]
    schema = webhook["post"]["requestBody"]["content"][JSON_TYPE]["schema"]
    return [f"{sent['type']}: {problem}" for problem in schema_errors(document, schema, sent)]
