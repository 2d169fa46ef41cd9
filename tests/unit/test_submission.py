"""The CRM contract's field rules, without any I/O."""

from __future__ import annotations

import pytest

from services.ingest.intake.submission import (
    MULTIPART_TYPE,
    URLENCODED_TYPE,
    parse_form_submission,
    parse_json_submission,
)
from shared.errors import InvalidRequest

GOOD = b'{"call_id":"c1","audio_url":"https://crm.example/a.mp3","duration":900,"manager_id":"m","deal_id":"d"}'


def test_numeric_ids_become_strings() -> None:
    submission = parse_json_submission(
        b'{"call_id":17,"audio_url":"http://h/a.mp3","duration":1.5,"manager_id":3,"deal_id":4}'
    )
    assert (submission.call_id, submission.manager_id, submission.deal_id) == ("17", "3", "4")
    assert submission.duration == 1.5


def test_unknown_fields_are_extra() -> None:
    submission = parse_json_submission(GOOD[:-1] + b',"crm":"amo","n":1}')
    assert submission.extra == {"crm": "amo", "n": 1}


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_json_numbers_are_rejected(constant: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_json_submission(GOOD.replace(b"900", constant))


def test_messages_are_russian_and_name_fields() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_submission(b'{"audio_url":"x"}')
    error = caught.value
    assert error.code == "invalid_request"
    assert error.message.startswith("Некорректные поля запроса: ")
    fields = {d["field"]: d["message"] for d in error.details}
    assert fields["call_id"] == "обязательное поле"
    assert fields["audio_url"] == "нужна ссылка http:// или https://"
    assert set(fields) == {"call_id", "audio_url", "manager_id", "deal_id", "duration"}


def test_multipart_with_charset_and_empty_duration() -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="call_id"\r\n\r\nc\r\n'
        b'--B\r\nContent-Disposition: form-data; name="audio_url"\r\n\r\nhttps://h/a.ogg\r\n'
        b'--B\r\nContent-Disposition: form-data; name="manager_id"\r\n\r\nm\r\n'
        b'--B\r\nContent-Disposition: form-data; name="deal_id"\r\n\r\nd\r\n'
        b'--B\r\nContent-Disposition: form-data; name="duration"\r\n\r\n\r\n'
        b'--B\r\nContent-Disposition: form-data; name="stage"\r\n'
        b"Content-Type: text/plain; charset=cp1251\r\n\r\n\xcf\xf0\xee\xe4\xe0\xe6\xe8\r\n--B--\r\n"
    )
    submission = parse_form_submission(body, f"{MULTIPART_TYPE}; boundary=B")
    assert submission.duration is None
    assert submission.stage == "Продажи"


def test_urlencoded_plus_and_percent_decoding() -> None:
    submission = parse_form_submission(
        b"call_id=a+b&audio_url=https%3A%2F%2Fh%2Fx.wav&manager_id=m&deal_id=d&duration=0",
        URLENCODED_TYPE,
    )
    assert submission.call_id == "a b"
    assert submission.duration == 0


def test_too_many_form_fields_is_400() -> None:
    body = b"&".join(b"f%d=1" % i for i in range(500))
    with pytest.raises(InvalidRequest):
        parse_form_submission(body, URLENCODED_TYPE)


@pytest.mark.parametrize("depth", [990, 100_000])
def test_deeply_nested_json_is_a_400_not_a_crash(depth: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_submission(GOOD[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}")
    assert caught.value.details == [{"field": "body", "message": "некорректный JSON"}]


def test_percent_encoded_bytes_that_are_not_utf8_are_a_400() -> None:
    """Decoded lossily, `a%FF` and `a%FE` would both become `a\ufffd`: two calls, one id."""
    with pytest.raises(InvalidRequest) as caught:
        parse_form_submission(
            b"call_id=a%FF&audio_url=https%3A%2F%2Fh%2Fx.wav&manager_id=m&deal_id=d",
            URLENCODED_TYPE,
        )
    assert caught.value.details == [
        {"field": "body", "message": "тело должно быть в кодировке UTF-8"}
    ]
