"""What the CRM sends: parsing of JSON, urlencoded and multipart bodies into one validated model.

Every rule of SPEC §2 lives here; any violation becomes `InvalidRequest` naming
the field(s) in Russian.
"""

from __future__ import annotations

import json
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import ErrorDetails

from shared.errors import InvalidRequest
from shared.url_policy import UrlPolicy, UrlRefused, parse_url

MAX_BODY_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100
MAX_URL_LENGTH = 2048

JSON_TYPE = "application/json"
URLENCODED_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"

ModelT = TypeVar("ModelT", bound=BaseModel)


def _id_from_number(value: Any) -> Any:
    # CRMs often number their ids; 17 and "17" are the same id. Booleans are not ids.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _printable(value: str) -> str:
    if not value.isprintable() or value != value.strip():
        raise ValueError("допустимы только печатные символы без пробелов по краям")
    return value


def _http_url(value: str) -> str:
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise ValueError("ссылка не должна содержать пробелов и управляющих символов")
    try:
        url = parse_url(value)
    except UrlRefused as exc:
        raise ValueError(exc.message) from exc
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise ValueError("нужна ссылка http:// или https://")
    return value


def require_allowed_link(url_policy: UrlPolicy, link: str, field: str) -> None:
    """400 naming `field` when the URL policy refuses a link being saved."""
    try:
        url_policy.check_link(link)
    except UrlRefused as exc:
        raise invalid_fields([{"field": field, "message": exc.message}]) from exc


_CrmIdText = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_printable)
]
CrmId = Annotated[_CrmIdText, BeforeValidator(_id_from_number)]
OptionalCrmId = Annotated[_CrmIdText | None, BeforeValidator(_id_from_number)]
OptionalText = Annotated[str, StringConstraints(max_length=512)] | None
HttpLink = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_URL_LENGTH), AfterValidator(_http_url)
]


class CallSubmission(BaseModel):
    """A call as the CRM submits it through form data (duration may be absent)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    call_id: CrmId = Field(description="CRM's unique call id, 1–128 printable characters.")
    audio_url: HttpLink = Field(description="http(s) link the system downloads the file from.")
    manager_id: CrmId = Field(description="CRM manager id.")
    deal_id: CrmId = Field(description="CRM deal id, used to group calls.")
    duration: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Seconds; the probed length is authoritative."
    )
    manager_name: OptionalText = Field(None, description="Manager's name.")
    deal_stage_id: OptionalCrmId = Field(None, description="CRM deal stage id.")
    stage_id: OptionalCrmId = Field(None, description="CRM funnel id.")
    stage: OptionalText = Field(None, description="CRM funnel name.")

    @property
    def extra(self) -> dict[str, Any]:
        """Fields the contract does not know, kept as sent."""
        return dict(self.model_extra or {})


class JsonCallSubmission(CallSubmission):
    """A call submitted as JSON: `duration` is required and must be a JSON number."""

    duration: float = Field(
        ge=0, strict=True, allow_inf_nan=False, description="Seconds, a number ≥ 0."
    )


_MESSAGES: dict[str, str] = {
    "missing": "обязательное поле",
    "string_type": "должно быть строкой",
    "string_too_short": "не может быть пустым",
    "too_short": "не может быть пустым",
    "float_type": "должно быть числом",
    "float_parsing": "должно быть числом",
    "finite_number": "должно быть конечным числом",
    "greater_than_equal": "не может быть отрицательным",
    "int_parsing": "должно быть целым числом",
    "int_type": "должно быть целым числом",
    "bool_parsing": "должно быть да или нет",
    "date_from_datetime_parsing": "дата в формате ГГГГ-ММ-ДД",
    "date_parsing": "дата в формате ГГГГ-ММ-ДД",
    "literal_error": "недопустимое значение",
    "enum": "недопустимое значение",
    "string_pattern_mismatch": "недопустимый формат",
    "list_type": "должно быть списком",
    "extra_forbidden": "неизвестное поле",
}


def _field_message(error: ErrorDetails) -> str:
    if error["type"] in ("string_too_long", "too_long"):
        return f"не длиннее {error.get('ctx', {}).get('max_length')} символов"
    if error["type"] == "string_too_short" and error.get("ctx", {}).get("min_length", 1) > 1:
        return f"не короче {error['ctx']['min_length']} символов"
    if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        ctx = error.get("ctx", {})
        bound = next((ctx[key] for key in ("gt", "ge", "lt", "le") if key in ctx), "")
        if error["type"] == "greater_than_equal" and bound == 0:
            return "не может быть отрицательным"
        sign = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<"}.get(
            error["type"], "≤"
        )
        return f"должно быть {sign} {bound}"
    if error["type"] == "value_error":
        return str(error.get("ctx", {}).get("error", "некорректное значение"))
    return _MESSAGES.get(error["type"], "некорректное значение")


def invalid_fields(details: list[dict[str, str]]) -> InvalidRequest:
    """Build the 400 error naming every bad field."""
    names = ", ".join(dict.fromkeys(d["field"] for d in details))
    return InvalidRequest(f"Некорректные поля запроса: {names}", details=details)


def validation_error(exc: ValidationError) -> InvalidRequest:
    """Translate a pydantic error into the API's 400 with Russian field messages."""
    details = [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "body",
            "message": _field_message(error),
        }
        for error in exc.errors()
    ]
    return invalid_fields(details)


def validated(model: type[ModelT], data: Any) -> ModelT:
    """`data` as a `model`; a 400 naming every bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def media_type(content_type: str) -> str:
    """Return the lower-cased media type of a Content-Type header, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def parse_json_submission(body: bytes) -> JsonCallSubmission:
    """Validate a JSON body against the contract."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # too deep is not JSON to us
        raise InvalidRequest(
            "Тело запроса не является корректным JSON",
            details=[{"field": "body", "message": "некорректный JSON"}],
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest(
            "Тело запроса должно быть JSON-объектом",
            details=[{"field": "body", "message": "ожидается JSON-объект"}],
        )
    return validated(JsonCallSubmission, data)


def _reject_constant(name: str) -> float:
    # json accepts NaN and Infinity by default; the contract does not.
    raise ValueError(f"{name} is not valid JSON")


def parse_form_submission(body: bytes, content_type: str) -> CallSubmission:
    """Validate an urlencoded or multipart body against the contract."""
    if media_type(content_type) == MULTIPART_TYPE:
        pairs = _multipart_pairs(body, content_type)
    else:
        pairs = _urlencoded_pairs(body)
    fields: dict[str, str] = {}
    repeated: list[dict[str, str]] = []
    for name, value in pairs:
        if name in fields:
            repeated.append({"field": name, "message": "поле передано несколько раз"})
        fields[name] = value
    if repeated:
        raise invalid_fields(repeated)
    duration = fields.pop("duration", "").strip()
    if duration:  # absent when blank; Russian CRMs write a decimal comma («35,5»)
        fields["duration"] = _DECIMAL_COMMA.sub(r"\1.\2", duration)
    return validated(CallSubmission, fields)


_DECIMAL_COMMA = re.compile(r"^(\d+),(\d+)$")


def _malformed_form(reason: str) -> InvalidRequest:
    return InvalidRequest("Некорректное тело формы", details=[{"field": "body", "message": reason}])


def _urlencoded_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",  # percent-encoded bytes too: lossy decoding would merge ids
        )
    except UnicodeDecodeError as exc:
        raise _malformed_form("тело должно быть в кодировке UTF-8") from exc
    except ValueError as exc:
        raise _malformed_form("некорректная кодировка application/x-www-form-urlencoded") from exc


def _multipart_pairs(body: bytes, content_type: str) -> list[tuple[str, str]]:
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(header + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart() or message.defects:
        raise _malformed_form("некорректное тело multipart/form-data")
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_content_disposition() != "form-data":
            raise _malformed_form("у части формы нет имени поля")
        if part.get_filename() is not None:
            raise invalid_fields(
                [{"field": name, "message": "передайте ссылку audio_url, а не файл"}]
            )
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            raise _malformed_form("некорректная часть формы")
        try:
            pairs.append((name, payload.decode(part.get_content_charset() or "utf-8")))
        except (UnicodeDecodeError, LookupError) as exc:
            raise invalid_fields([{"field": name, "message": "некорректная кодировка"}]) from exc
        if len(pairs) > MAX_FORM_FIELDS:
            raise _malformed_form("слишком много полей")
    return pairs
