"""An alert's email that cannot be written ends its delivery (refused), never its event."""

from __future__ import annotations

import json

from services.notifier.sending import send_email
from shared.connection import SmtpSettings
from shared.url_policy import UrlPolicy


async def test_an_email_that_cannot_be_written_is_a_refused_attempt() -> None:
    smtp = SmtpSettings(host="smtp.company.test", sender="rop@company.test")
    # A lone surrogate cannot be encoded: the message fails before any connection.
    body = {"to": "head@company.test", "subject": "Оценка 40%", "text": "Звонок \udcff"}
    delivery = {"_id": "whk_1", "body": json.dumps(body)}
    record = await send_email(smtp, UrlPolicy(), delivery, timeout_s=1)
    assert record["refused"] is True
    assert record["error"].startswith("Письмо не составить:")
