"""One root exception, split into permanent and retryable, each carrying its spec code.

The edges map them: the web middleware to an HTTP status, a consumer wrapper to
ack, requeue or dead-letter. Messages are Russian: they reach CRM integrators and
the web application as they are.
"""

from __future__ import annotations

from typing import Any


class RopError(Exception):
    """Root of every error the system reports with a code."""

    code = "internal"
    message = "Внутренняя ошибка сервиса"
    retryable = False

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        self.message = message or type(self).message
        self.details = details or []
        self.extra = extra
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        """Render the error body of the API: status, code, message, details and extras."""
        return {
            "status": "error",
            "code": self.code,
            "message": self.message,
            "details": self.details,
            **self.extra,
        }


class PermanentError(RopError):
    """Retrying will not help: the input or the state is wrong."""


class RetryableError(RopError):
    """A dependency is unavailable for now; the same work may succeed later."""

    retryable = True


class InvalidRequest(PermanentError):
    code = "invalid_request"
    message = "Некорректный запрос"


class Unauthorized(PermanentError):
    code = "unauthorized"
    message = "Недействительный API ключ"


class Forbidden(PermanentError):
    code = "forbidden"
    message = "Недостаточно прав"


class NotFound(PermanentError):
    code = "not_found"
    message = "Не найдено"


class MethodNotAllowed(PermanentError):
    code = "method_not_allowed"
    message = "Метод не поддерживается"


class DuplicateCall(PermanentError):
    code = "duplicate_call"
    message = "Звонок с данным call_id уже обработан"


class Conflict(PermanentError):
    code = "conflict"
    message = "Конфликт с текущим состоянием"


class TooManyRequests(RetryableError):
    code = "rate_limited"
    message = "Слишком много попыток, повторите позже"


class Unavailable(RetryableError):
    code = "unavailable"
    message = "Сервис временно недоступен, повторите запрос позже"


class UnknownEvent(PermanentError):
    """An event of a type or version this consumer does not know: dead-letter it."""

    code = "unknown_event"
    message = "Неизвестный тип или версия события"
