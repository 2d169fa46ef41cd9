"""What each API route promises, declared beside its handler: `@documented(...)` under the
route's decorator. `openapi.py` assembles the OpenAPI document from the route tables, so
a route cannot be served without being described, nor described without being served.

Schemas are types: the pydantic models that validate requests, and the models or
TypedDicts the handlers answer with (mypy checks the answers against them, the tests
check real answers against the document).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, WithJsonSchema

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])

# A time as the API writes it (ISO 8601, with its offset).
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Access(enum.Enum):
    """Who may call an operation, and so which credentials and refusals it has."""

    PUBLIC = "public"
    API_KEY = "api_key"  # the CRM, with the connection's API key
    SESSION = "session"  # a person: a Bearer token, or the cookie with its CSRF token


@dataclass(frozen=True)
class Answer:
    """A successful answer: its meaning, and the type of its JSON body; or the media type
    of a body that is not JSON; or neither (no body)."""

    description: str
    schema: Any = None
    xlsx: bool = False  # with `format=xlsx`, an Excel file instead
    media_type: str | None = None  # not JSON: text or a file


@dataclass(frozen=True)
class Operation:
    """One method on one path, as the OpenAPI document describes it."""

    summary: str
    access: Access
    answers: Mapping[int, Answer]
    errors: Mapping[int, str] = field(default_factory=dict)  # status: codes and when
    body: Mapping[str, Any] = field(default_factory=dict)  # content type: request type
    query: type[BaseModel] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # request header: meaning


# Errors many operations have.
INVALID = {400: "invalid_request: names the field"}
MISSING = {404: "not_found"}

_OPERATIONS: dict[Callable[..., Any], Operation] = {}


def documented(
    summary: str,
    answer: Any = None,
    *,
    answers: Mapping[int, Answer] | None = None,
    access: Access = Access.SESSION,
    errors: Mapping[int, str] | None = None,
    body: Mapping[str, Any] | None = None,
    query: type[BaseModel] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Callable[[HandlerT], HandlerT]:
    """Describe the handler below (it is returned unchanged): `answer` is its 200 answer
    (an Answer, or the type of an "OK" JSON body), `answers` the others."""
    successes = dict(answers or {})
    if answer is not None:
        successes[200] = answer if isinstance(answer, Answer) else Answer("OK", answer)
    operation = Operation(
        summary=summary,
        access=access,
        answers=successes,
        errors=errors or {},
        body=body or {},
        query=query,
        headers=headers or {},
    )

    def describe(handler: HandlerT) -> HandlerT:
        _OPERATIONS[handler] = operation
        return handler

    return describe


def operation_of(handler: Callable[..., Any]) -> Operation | None:
    """The description of a handler, None for one that is not part of the API (pages)."""
    return _OPERATIONS.get(handler)
