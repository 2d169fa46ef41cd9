"""The OpenAPI 3.1 document of the gateway, assembled from its route tables: every route's
`@documented` operation (`apidoc.py`), its types turned into JSON schemas by pydantic in
one pass, so that every schema is a component and shared ones are written once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from services.ingest.apidoc import Access, Operation, operation_of
from services.ingest.backoffice.exports import XLSX_TYPE
from services.ingest.edge import ErrorBody
from services.ingest.intake.submission import JSON_TYPE

REF = "#/components/schemas/{model}"
WEBHOOK_DELIVERY = (
    "Signed as Standard Webhooks: `webhook-id` (the same on every retry: deduplicate on "
    "it), `webhook-timestamp`, `webhook-signature` (`v1,` base64 HMAC-SHA256 of "
    "`id.timestamp.body` with the endpoint's `whsec_` secret). Retried on timeouts and "
    "errors along the configured schedule, honouring Retry-After."
)
JsonSchema = dict[str, Any]
Mode = Literal["validation", "serialization"]

_UNAVAILABLE = "unavailable: the database cannot be reached"
# What every operation of an access may answer besides its own errors.
_ACCESS_ERRORS: dict[Access, dict[int, str]] = {
    Access.PUBLIC: {},
    Access.API_KEY: {
        401: "unauthorized: API key missing or wrong",
        500: "internal",
        503: _UNAVAILABLE,
    },
    Access.SESSION: {
        401: "unauthorized: no session",
        403: "forbidden: another role, or no CSRF token with a cookie session",
        500: "internal",
        503: _UNAVAILABLE,
    },
}
_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.API_KEY: [{"apiKeyQuery": []}, {"apiKeyHeader": []}],
    Access.SESSION: [{"bearer": []}, {"sessionCookie": []}],
}
SECURITY_SCHEMES = {
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "apiKey"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "rop_session"},
}
_XLSX_PARAMETER = {
    "name": "format",
    "in": "query",
    "required": False,
    "schema": {"const": "xlsx"},
    "description": "An Excel file of every selected row instead of JSON",
}


def documented_routes(
    tables: Iterable[web.RouteTableDef],
) -> list[tuple[web.RouteDef, Operation]]:
    """Every route with its operation; an API route without one is a mistake."""
    found = []
    for table in tables:
        for route in table:
            if not isinstance(route, web.RouteDef):
                continue
            operation = operation_of(route.handler)
            if operation is not None:
                found.append((route, operation))
            elif route.path.startswith("/api/"):
                raise LookupError(f"{route.method} {route.path} is not @documented")
    return found


def _types(operation: Operation) -> Iterable[tuple[Any, Mode]]:
    for request_type in operation.body.values():
        yield request_type, "validation"
    for answer in operation.answers.values():
        if answer.schema is not None:
            yield answer.schema, "serialization"


def _query_parameters(model: type[BaseModel]) -> list[JsonSchema]:
    schema = model.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "required": name in schema.get("required", ()),
            "schema": {key: value for key, value in field.items() if key != "description"},
            **({"description": field["description"]} if "description" in field else {}),
        }
        for name, field in schema["properties"].items()
    ]


def _json_content(schema: JsonSchema) -> JsonSchema:
    return {JSON_TYPE: {"schema": schema}}


def _render(
    path: str, operation: Operation, schemas: dict[tuple[Any, Mode], JsonSchema]
) -> JsonSchema:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    if operation.query is not None:
        parameters += _query_parameters(operation.query)
    parameters += [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
         "description": meaning}
        for name, meaning in operation.headers.items()
    ]  # fmt: skip
    responses: dict[str, JsonSchema] = {}
    for status, answer in operation.answers.items():
        response: JsonSchema = {"description": answer.description}
        content: JsonSchema = {}
        if answer.schema is not None:
            content = _json_content(schemas[answer.schema, "serialization"])
        if answer.media_type is not None:
            content[answer.media_type] = {"schema": {"type": "string"}}
        if answer.xlsx:
            content[XLSX_TYPE] = {"schema": {"type": "string", "format": "binary"}}
            parameters.append(_XLSX_PARAMETER)
        if content:
            response["content"] = content
        responses[str(status)] = response
    error = _json_content(schemas[ErrorBody, "serialization"])
    for status, meaning in sorted({**_ACCESS_ERRORS[operation.access], **operation.errors}.items()):
        responses.setdefault(str(status), {"description": meaning, "content": error})
    rendered: JsonSchema = {"summary": operation.summary}
    if operation.access in _SECURITY:
        rendered["security"] = _SECURITY[operation.access]
    if parameters:
        rendered["parameters"] = parameters
    if operation.body:
        rendered["requestBody"] = {
            "required": True,
            "content": {
                content_type: {"schema": schemas[request_type, "validation"]}
                for content_type, request_type in operation.body.items()
            },
        }
    rendered["responses"] = responses
    return rendered


def _webhook(body: type[BaseModel], schema: JsonSchema) -> JsonSchema:
    return {
        "post": {
            "summary": (body.__doc__ or "").strip(),
            "description": WEBHOOK_DELIVERY,
            "requestBody": {"required": True, "content": _json_content(schema)},
            "responses": {
                "2XX": {"description": "Received: not sent again"},
                "410": {"description": "Gone: nothing more is sent to this URL"},
                "default": {"description": "Sent again later, with the same `webhook-id`"},
            },
        }
    }


def build_openapi(
    *tables: web.RouteTableDef, webhooks: Mapping[str, type[BaseModel]] | None = None
) -> JsonSchema:
    """The document of every documented route of the tables, and of the webhooks sent."""
    routes = documented_routes(tables)
    webhooks = webhooks or {}
    wanted: set[tuple[Any, Mode]] = {
        typed for _, operation in routes for typed in _types(operation)
    }
    for body in (ErrorBody, *webhooks.values()):
        wanted.add((body, "serialization"))
    # In a stable order: the names pydantic gives colliding schemas depend on it.
    schemas, definitions = TypeAdapter.json_schemas(
        [(typed, mode, TypeAdapter(typed)) for typed, mode in sorted(wanted, key=repr)],
        ref_template=REF,
    )
    paths: dict[str, JsonSchema] = {}
    for route, operation in routes:
        rendered = _render(route.path, operation, schemas)
        paths.setdefault(route.path, {})[route.method.lower()] = rendered
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Цифровой РОП",
            "version": "1.0.0",
            "description": (
                "CRM API: submit calls, follow their tasks; admin API: settings, users, "
                "calls, managers, deliveries (what the web application uses)."
            ),
        },
        "paths": paths,
        "webhooks": {
            name: _webhook(body, schemas[body, "serialization"]) for name, body in webhooks.items()
        },
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
