"""Whatever a CRM sends, parsing ends in a valid submission or a 400, never another error."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.intake.submission import (
    URLENCODED_TYPE,
    CallSubmission,
    parse_form_submission,
    parse_json_submission,
)
from shared.errors import InvalidRequest

FIELDS = ["call_id", "audio_url", "manager_id", "deal_id", "duration", "stage", "x"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=200),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


def parses_or_400(parse: object, *args: object) -> None:
    result: object
    try:
        result = parse(*args)  # type: ignore[operator]
    except InvalidRequest as error:
        result = error
    assert isinstance(result, CallSubmission) or (
        isinstance(result, InvalidRequest) and result.details
    )


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from([*FIELDS, 'a"b', ""]))
        disposition = f'form-data; name="{name}"'
        if draw(st.booleans()):
            disposition += f'; filename="{draw(st.text(max_size=5))}"'
        headers = f"Content-Disposition: {disposition}\r\n"
        if draw(st.booleans()):
            charset = draw(st.sampled_from(["utf-8", "cp1251", "nope", "utf-16"]))
            headers += f"Content-Type: text/plain; charset={charset}\r\n"
        value = draw(st.binary(max_size=50))
        parts.append(b"--b\r\n" + headers.encode("utf-8", "replace") + b"\r\n" + value + b"\r\n")
    return b"".join(parts) + draw(st.sampled_from([b"--b--\r\n", b"--b--", b"", b"--b"]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_as_json(body: bytes) -> None:
    parses_or_400(parse_json_submission, body)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=7))
def test_any_json_object(data: dict[str, object]) -> None:
    parses_or_400(parse_json_submission, json.dumps(data).encode())


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300), st.sampled_from([URLENCODED_TYPE, "multipart/form-data; boundary=b"])
)
def test_any_bytes_as_form(body: bytes, content_type: str) -> None:
    parses_or_400(parse_form_submission, body, content_type)


@settings(max_examples=300, deadline=None)
@given(multipart_bodies())
def test_any_multipart_parts(body: bytes) -> None:
    parses_or_400(parse_form_submission, body, "multipart/form-data; boundary=b")
