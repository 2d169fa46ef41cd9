"""The CRM API as tests call it on the in-process gateway: a sample call, JSON and form
submissions with the API key."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from devtools.samples import sample_call
from tests.conftest import API_KEY

Client = TestClient[Any, Any]

a_call = sample_call


def as_multipart(fields: dict[str, Any]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, str(value))
    # aiohttp sends urlencoded for plain fields unless told otherwise.
    form._is_multipart = True
    return form


def as_urlencoded(fields: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in fields.items()}


FORM_ENCODINGS = {"multipart": as_multipart, "urlencoded": as_urlencoded}


async def post_json(
    client: Client, body: Any, *, key: str | None = API_KEY
) -> aiohttp.ClientResponse:
    params = {"apiKey": key} if key is not None else {}
    return await client.post("/api/v1/calls", json=body, params=params)


async def post_form(
    client: Client, fields: dict[str, Any], encoding: str, *, key: str | None = API_KEY
) -> aiohttp.ClientResponse:
    params = {"apiKey": key} if key is not None else {}
    return await client.post(
        "/api/v1/calls/audio-upload", data=FORM_ENCODINGS[encoding](fields), params=params
    )
