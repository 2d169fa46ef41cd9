"""The OpenAPI 3.1 document of the gateway; request schemas come from the validating models."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.ingest.backoffice.accounts import UserView
from services.ingest.backoffice.commands import CommentForm
from services.ingest.backoffice.connection import ConnectionUpdate
from services.ingest.backoffice.deliveries import DeliveryFilters
from services.ingest.backoffice.exports import XLSX_TYPE
from services.ingest.backoffice.filters import CallFilters
from services.ingest.backoffice.users import UserForm, UserRecord
from services.ingest.edge import HTTP_STATUS
from services.ingest.intake.submission import CallSubmission, JsonCallSubmission
from services.ingest.intake.tasks import ACCEPTED_MESSAGE
from shared.scripts import Binding, Table, Template

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _request_schemas() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [
            (JsonCallSubmission, "validation"),
            (CallSubmission, "validation"),
            (ConnectionUpdate, "validation"),
            (Template, "validation"),
            (Binding, "validation"),
            (Table, "validation"),
            (UserForm, "validation"),
            (CommentForm, "validation"),
            (UserView, "serialization"),
            (UserRecord, "serialization"),
        ],
        ref_template=REF,
    )
    return dict(definitions["$defs"])


_NULLABLE_STRING = {"type": ["string", "null"]}

_RESPONSE_SCHEMAS: dict[str, Any] = {
    "Accepted": {
        "type": "object",
        "required": ["status", "message", "task_id", "estimated_processing_time"],
        "properties": {
            "status": {"const": "success"},
            "message": {"const": ACCEPTED_MESSAGE},
            "task_id": {"type": "string", "pattern": "^task_[0-9a-f]{12}$"},
            "estimated_processing_time": {"type": "string", "pattern": r"^\d+-\d+ минут$"},
        },
    },
    "Skipped": {
        "type": "object",
        "required": ["status", "message", "task_id"],
        "properties": {
            "status": {"const": "skipped"},
            "message": {"type": "string"},
            "task_id": {"type": "string", "pattern": "^task_[0-9a-f]{12}$"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["status", "code", "message", "details"],
        "properties": {
            "status": {"const": "error"},
            "code": {"enum": list(HTTP_STATUS)},
            "message": {"type": "string", "description": "Russian text for people."},
            "details": {"type": "array", "items": {"type": "object"}},
            "task_id": {
                "type": "string",
                "description": "With duplicate_call: the task of the first submission.",
            },
        },
    },
    "Task": {
        "type": "object",
        "required": ["task_id", "call_id", "status", "timeline"],
        "properties": {
            "task_id": {"type": "string"},
            "call_id": {"type": "string"},
            "status": {
                "enum": [
                    "queued",
                    "downloading",
                    "analyzing",
                    "delivering",
                    "done",
                    "skipped",
                    "failed",
                ]
            },
            "error": {"type": ["object", "null"]},
            "skip_reason": {"type": ["object", "null"]},
            "deal_id": {"type": "string"},
            "manager_id": {"type": "string"},
            "manager_name": _NULLABLE_STRING,
            "deal_stage_id": _NULLABLE_STRING,
            "stage_id": _NULLABLE_STRING,
            "stage": _NULLABLE_STRING,
            "audio_url": {"type": "string"},
            "declared_duration_s": {"type": ["number", "null"]},
            "probed_duration_s": {"type": ["number", "null"]},
            "audio": {
                "type": ["object", "null"],
                "description": "What the downloader probed: container, codec, sample rate…",
            },
            "parts": {"type": ["array", "null"]},
            "extra": {"type": "object"},
            "received_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "timeline": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["status", "at"],
                    "properties": {
                        "status": {"type": "string"},
                        "at": {"type": "string", "format": "date-time"},
                    },
                },
            },
            "results": {"type": ["object", "null"]},
            "revision": {
                "type": ["integer", "null"],
                "description": "1 for the first results, one more at every re-analysis or "
                "correction (the webhooks carry it too)",
            },
            "roles": {
                "type": ["object", "null"],
                "description": "How manager and client were told apart, once analysed",
                "properties": {
                    "method": {"enum": ["channels", "voiceprint", "cues", "talk_share", "person"]},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "uncertain": {"type": "boolean"},
                },
            },
        },
    },
    "LoginRequest": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
        "additionalProperties": False,
    },
    "Session": {
        "type": "object",
        "required": ["token", "csrf_token", "user"],
        "properties": {
            "token": {"type": "string", "description": "Send as `Authorization: Bearer`."},
            "csrf_token": {
                "type": "string",
                "description": "Send as X-CSRF-Token on unsafe requests made with the cookie.",
            },
            "expires_at": {"type": "string", "format": "date-time"},
            "user": _ref("UserView"),
        },
    },
    "Connection": {
        "type": "object",
        "required": ["upload_url", "json_url", "api_key", "min_call_duration_s"],
        "properties": {
            "upload_url": {"type": "string"},
            "json_url": {"type": "string"},
            "api_key": {"type": "string"},
            "min_call_duration_s": {"type": "number"},
            "error_webhook": {
                "type": ["object", "null"],
                "properties": {"url": {"type": "string"}, "secret": {"type": "string"}},
            },
            "voiceprints_enabled": {"type": "boolean"},
        },
    },
}


def _view_schemas(requests: dict[str, Any]) -> dict[str, Any]:
    """What the catalog answers: the saved fields with their id and times; a webhook says
    that its secret is set, and shows it to admins only."""
    views: dict[str, Any] = {
        "WebhookView": {
            "type": "object",
            "required": ["url", "secret", "secret_set"],
            "properties": {
                "url": {"type": "string"},
                "secret": {**_NULLABLE_STRING, "description": "`whsec_…`; null unless admin"},
                "secret_set": {"type": "boolean"},
            },
        }
    }
    for name in ("Template", "Binding", "Table"):
        view = copy.deepcopy(requests[name])
        view["title"] = f"{name}View"
        view["properties"] |= {
            "id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        }
        if "webhook" in view["properties"]:
            view["properties"]["webhook"] = _ref("WebhookView")
        view["required"] = [*view.get("required", []), "id", "created_at", "updated_at"]
        views[f"{name}View"] = view
    return views


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ok_or_xlsx(schema: dict[str, Any]) -> dict[str, Any]:
    """JSON, or with `format=xlsx` an Excel file."""
    ok = _ok(schema)
    ok["content"][XLSX_TYPE] = {"schema": {"type": "string", "format": "binary"}}
    return ok


_CRM_ERRORS = {
    "400": _error("invalid_request: a field, the body or the content type is wrong"),
    "401": _error("unauthorized: API key missing or wrong"),
    "500": _error("internal"),
    "503": _error("unavailable: the database cannot be reached"),
}
_ADMIN_ERRORS = {
    "401": _error("unauthorized: no session"),
    "403": _error("forbidden: another role, or no CSRF token with a cookie session"),
}
_API_KEY_SECURITY: list[dict[str, list[str]]] = [{"apiKeyQuery": []}, {"apiKeyHeader": []}]
_SESSION_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"sessionCookie": []}]


def _submit(summary: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": _API_KEY_SECURITY,
            "requestBody": {"required": True, "content": content},
            "responses": {
                "200": _ok(
                    {"oneOf": [_ref("Accepted"), _ref("Skipped")]},
                    "Accepted (or skipped: shorter than the minimum duration)",
                ),
                "409": _error("duplicate_call: carries the task_id of the first submission"),
                **_CRM_ERRORS,
            },
        }
    }


def _task_lookup(summary: str, name: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": _API_KEY_SECURITY,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": _ok(_ref("Task")), "404": _error("not_found"), **_CRM_ERRORS},
        }
    }


def _catalog(path: str, schema: str, what: str) -> dict[str, Any]:
    """List/create and get/replace/delete of a catalog kind (admin, supervisor)."""
    body = {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}
    item = _ref(f"{schema}View")
    invalid = {"400": _error("invalid_request: names the field")}
    path_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    security = {"security": _SESSION_SECURITY}
    return {
        path: {
            "get": {
                "summary": f"List {what}",
                **security,
                "responses": {"200": _ok({"type": "array", "items": item}), **_ADMIN_ERRORS},
            },
            "post": {
                "summary": f"Create {what}",
                **security,
                "requestBody": body,
                "responses": {"201": _ok(item, "Created"), **invalid, **_ADMIN_ERRORS},
            },
        },
        f"{path}/{{id}}": {
            "parameters": path_id,
            "get": {
                "summary": f"One of {what}",
                **security,
                "responses": {"200": _ok(item), "404": _error("not_found"), **_ADMIN_ERRORS},
            },
            "put": {
                "summary": f"Replace one of {what}",
                **security,
                "requestBody": body,
                "responses": {
                    "200": _ok(item),
                    **invalid,
                    "404": _error("not_found"),
                    **_ADMIN_ERRORS,
                },
            },
            "delete": {
                "summary": f"Delete one of {what}",
                **security,
                "responses": {
                    "204": {"description": "Deleted"},
                    "404": _error("not_found"),
                    "409": _error("conflict: still in use"),
                    **_ADMIN_ERRORS,
                },
            },
        },
    }


def _path_id(name: str = "id") -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


# The calls-list filters, as query parameters (dates are YYYY-MM-DD; the last 7 days
# by default), plus `format=xlsx` where an Excel file can be had instead.
def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in model.model_json_schema()["properties"].items()
    ]


_FILTERS = _query_parameters(CallFilters)
_XLSX = {
    "name": "format",
    "in": "query",
    "required": False,
    "schema": {"const": "xlsx"},
    "description": "An Excel file of every selected row instead of JSON",
}


def _admin_paths() -> dict[str, Any]:
    """Users (admin), calls, managers, dashboard and table rows (SPEC §4.1)."""
    security = {"security": _SESSION_SECURITY}
    user_body = {"required": True, "content": {"application/json": {"schema": _ref("UserForm")}}}
    invalid = {"400": _error("invalid_request: names the field")}
    missing = {"404": _error("not_found")}
    not_yours = {"403": _error("forbidden: another manager's call, or the role may not")}
    obj = {"type": "object"}
    user = _ref("UserRecord")
    return {
        "/api/v1/users": {
            "get": {"summary": "Users (admin)", **security,
                    "responses": {"200": _ok({"type": "array", "items": user}),
                                  **_ADMIN_ERRORS}},
            "post": {"summary": "Create a user (admin)", **security, "requestBody": user_body,
                     "responses": {"201": _ok(user, "Created"), **invalid,
                                   "409": _error("conflict: email taken"), **_ADMIN_ERRORS}},
        },
        "/api/v1/users/{id}": {
            "parameters": _path_id(),
            "get": {"summary": "One user (admin)", **security,
                    "responses": {"200": _ok(user), **missing, **_ADMIN_ERRORS}},
            "put": {"summary": "Change a user; password only when given (admin)", **security,
                    "requestBody": user_body,
                    "responses": {"200": _ok(user), **invalid, **missing,
                                  "409": _error("conflict: the last admin, or email taken"),
                                  **_ADMIN_ERRORS}},
            "delete": {"summary": "Delete a user (admin)", **security,
                       "responses": {"204": {"description": "Deleted"}, **missing,
                                     "409": _error("conflict: the last admin"), **_ADMIN_ERRORS}},
        },
        "/api/v1/admin/calls": {
            "get": {"summary": "Calls the caller may see, filtered and paged", **security,
                    "parameters": [*_FILTERS, _XLSX],
                    "responses": {"200": _ok_or_xlsx(obj), **invalid, **_ADMIN_ERRORS}},
        },
        "/api/v1/admin/calls/{task_id}": {
            "get": {"summary": "The call card: results, transcript, comments, deliveries",
                    **security, "parameters": _path_id("task_id"),
                    "responses": {"200": _ok(obj), **missing, **_ADMIN_ERRORS, **not_yours}},
        },
        "/api/v1/admin/calls/{task_id}/audio": {
            "get": {"summary": "The stored audio; honours one HTTP byte range", **security,
                    "parameters": [*_path_id("task_id"),
                                   {"name": "Range", "in": "header", "required": False,
                                    "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "The whole file"},
                                  "206": {"description": "The range asked for"},
                                  "416": {"description": "Range not satisfiable"},
                                  **missing, **_ADMIN_ERRORS, **not_yours}},
        },
        "/api/v1/admin/calls/{task_id}/comments": {
            "post": {"summary": "Comment on a call", **security,
                     "parameters": _path_id("task_id"),
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": _ref("CommentForm")}}},
                     "responses": {"201": _ok(obj, "Added"), **invalid, **missing,
                                   **_ADMIN_ERRORS, **not_yours}},
        },
        "/api/v1/admin/calls/{task_id}/reanalyze": {
            "post": {"summary": "Analyse the call again; results go out with new webhook ids",
                     **security, "parameters": _path_id("task_id"),
                     "responses": {"202": _ok(obj, "Queued"), **missing,
                                   "409": _error("conflict: still in progress, or no audio"),
                                   **_ADMIN_ERRORS, **not_yours}},
        },
        "/api/v1/admin/calls/{task_id}/swap-roles": {
            "post": {"summary": "Exchange manager and client and score the call again without "
                                "transcribing it; the CRM gets the results as a new `revision` "
                                "with `reviewed_by` (admin, supervisor)",
                     **security, "parameters": _path_id("task_id"),
                     "responses": {"202": _ok(obj, "Queued"), **missing,
                                   "409": _error("conflict: not analysed yet"),
                                   **_ADMIN_ERRORS, **not_yours}},
        },
        "/api/v1/admin/calls/{task_id}/confirm-roles": {
            "post": {"summary": "The automatically decided roles of a mono call are right; the "
                                "manager's voiceprint learns from it (admin, supervisor)",
                     **security, "parameters": _path_id("task_id"),
                     "responses": {"200": _ok(obj, "The call card"), **missing,
                                   "409": _error("conflict: not a mono call analysed yet"),
                                   **_ADMIN_ERRORS, **not_yours}},
        },
        "/api/v1/voiceprints": {
            "get": {"summary": "Managers' voiceprints: calls and speech they were learnt from, "
                               "never the numbers (admin)", **security,
                    "responses": {"200": _ok(obj), **_ADMIN_ERRORS}},
        },
        "/api/v1/voiceprints/{manager_id}": {
            "delete": {"summary": "Forget a manager's voiceprint and their calls' voice "
                                  "embeddings (admin)", **security,
                       "parameters": _path_id("manager_id"),
                       "responses": {"204": {"description": "Deleted"}, **missing,
                                     **_ADMIN_ERRORS}},
        },
        "/api/v1/managers": {
            "get": {"summary": "Rating, calls, average score, perfect calls, talk ratio, weekly "
                               "averages per manager (admin, supervisor)", **security,
                    "parameters": _FILTERS,
                    "responses": {"200": _ok(obj), **invalid, **_ADMIN_ERRORS}},
        },
        "/api/v1/dashboard": {
            "get": {"summary": "Calls and average score per day, stages failed most, talk "
                               "ratios", **security, "parameters": _FILTERS,
                    "responses": {"200": _ok(obj), **invalid, **_ADMIN_ERRORS}},
        },
        "/api/v1/tables/{id}/rows": {
            "get": {"summary": "Rows a table collected (admin, supervisor)", **security,
                    "parameters": [*_path_id(), *_FILTERS, _XLSX],
                    "responses": {"200": _ok_or_xlsx(obj), **invalid, **missing,
                                  **_ADMIN_ERRORS}},
        },
    }  # fmt: skip


def build_openapi() -> dict[str, Any]:
    """Assemble the document."""
    form = _ref("CallSubmission")
    requests = _request_schemas()
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
        "paths": {
            "/api/v1/calls/audio-upload": _submit(
                "Submit a call as form data (duration optional)",
                {
                    "multipart/form-data": {"schema": form},
                    "application/x-www-form-urlencoded": {"schema": form},
                },
            ),
            "/api/v1/calls": _submit(
                "Submit a call as JSON",
                {"application/json": {"schema": _ref("JsonCallSubmission")}},
            ),
            "/api/v1/tasks/{task_id}": _task_lookup("Status of a task", "task_id"),
            "/api/v1/calls/{call_id}": _task_lookup("Status of a call by its CRM id", "call_id"),
            "/api/v1/auth/login": {
                "post": {
                    "summary": "Log in: sets an HttpOnly session cookie and returns a token",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("LoginRequest")}},
                    },
                    "responses": {
                        "200": _ok(_ref("Session")),
                        "400": _error("invalid_request"),
                        "401": _error("unauthorized: wrong email or password, or switched off"),
                        "429": _error(
                            "rate_limited: too many failed attempts from this address; "
                            "Retry-After says when to try again"
                        ),
                    },
                }
            },
            "/api/v1/auth/logout": {
                "post": {
                    "summary": "Log out: ends the browser session, or revokes the Bearer token",
                    "security": _SESSION_SECURITY,
                    "responses": {"200": _ok({"type": "object"}), **_ADMIN_ERRORS},
                }
            },
            "/api/v1/auth/me": {
                "get": {
                    "summary": "Who is logged in, and the CSRF token of their forms",
                    "security": _SESSION_SECURITY,
                    "responses": {"200": _ok({"type": "object"}), **_ADMIN_ERRORS},
                }
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _ok({"type": "object"})}}
            },
            "/api/v1/settings/connection": {
                "get": {
                    "summary": "Connection settings (admin)",
                    "security": _SESSION_SECURITY,
                    "responses": {"200": _ok(_ref("Connection")), **_ADMIN_ERRORS},
                },
                "put": {
                    "summary": "Change the minimum call duration, the error webhook and whether "
                    "voiceprints are kept (admin)",
                    "security": _SESSION_SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ConnectionUpdate")}},
                    },
                    "responses": {
                        "200": _ok(_ref("Connection")),
                        "400": _error("invalid_request"),
                        **_ADMIN_ERRORS,
                    },
                },
            },
            **_catalog("/api/v1/templates", "Template", "script templates"),
            **_catalog("/api/v1/bindings", "Binding", "script bindings"),
            **_catalog("/api/v1/tables", "Table", "analytics tables"),
            "/api/v1/deliveries": {
                "get": {
                    "summary": "Webhook delivery log (admin, supervisor)",
                    "security": _SESSION_SECURITY,
                    "parameters": _query_parameters(DeliveryFilters),
                    "responses": {
                        "200": _ok({"type": "object"}),
                        "400": _error("invalid_request"),
                        **_ADMIN_ERRORS,
                    },
                }
            },
            "/api/v1/deliveries/{id}/redeliver": {
                "post": {
                    "summary": "Send a delivery again, same webhook-id (admin, supervisor)",
                    "security": _SESSION_SECURITY,
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _ok({"type": "object"}),
                        "404": _error("not_found"),
                        "503": _error("unavailable"),
                        **_ADMIN_ERRORS,
                    },
                }
            },
            **_admin_paths(),
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _ok({})}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: database reachable (broker reported, not required)",
                    "responses": {"200": _ok({}), "503": _ok({}, "Database unreachable")},
                }
            },
        },
        "components": {
            "schemas": {**requests, **_view_schemas(requests), **_RESPONSE_SCHEMAS},
            "securitySchemes": {
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "apiKey"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "rop_session"},
            },
        },
    }


OPENAPI = build_openapi()
