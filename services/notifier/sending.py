"""One attempt of a delivery, its answer recorded for the delivery log: a webhook signed,
to the URL the policy allows; an alert's email, through the configured mail server the
policy allows."""

from __future__ import annotations

import email.policy
import json
import time
from datetime import datetime
from email.message import EmailMessage

import aiohttp
import aiosmtplib

from shared.connection import SmtpSettings
from shared.events import utcnow
from shared.http import retry_after_s
from shared.mongo import Document
from shared.url_policy import UrlPolicy, UrlRefused, parse_url
from shared.webhooks import signed_headers

SNIPPET_BYTES = 2048
MAX_RETRY_AFTER_S = 24 * 3600.0


def attempt_record(at: datetime, *, error: str | None = None) -> Document:
    """An attempt as the delivery log keeps it; `send` fills in what the endpoint said."""
    return {
        "at": at,
        "status_code": None,
        "latency_ms": None,
        "response": None,
        "error": error,
        "refused": False,
    }


async def send(
    session: aiohttp.ClientSession, policy: UrlPolicy, delivery: Document, *, timeout_s: float
) -> tuple[Document, float | None]:
    """One attempt: the record of it and any Retry-After the endpoint asked for."""
    at = utcnow()
    started = time.perf_counter()
    record = attempt_record(at)
    retry_after = None
    try:
        url = parse_url(delivery["url"])  # what is checked is what is sent to
        policy.check_url(url)
        headers = signed_headers(
            delivery["secret"], webhook_id=delivery["_id"], body=delivery["body"], at=at
        )
        async with session.post(
            url,
            data=delivery["body"].encode(),
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            snippet = await response.content.read(SNIPPET_BYTES)
            record["status_code"] = response.status
            record["response"] = snippet.decode(errors="replace")
            retry_after = retry_after_s(
                response.headers.get("Retry-After"), at_most_s=MAX_RETRY_AFTER_S
            )
    except UrlRefused as exc:
        record["error"], record["refused"] = exc.message, True
    except (TimeoutError, aiohttp.ClientError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
    record["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return record, retry_after


# Headers unfolded up to the standard's hard limit: Python folds a long Russian subject
# into encoded words and drops the space at the fold.
MAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)
NO_SMTP = "Почтовый сервер не настроен (Настройки → Подключение → Почта)"


def _header(value: str) -> str:
    """A header value as one line: a line break or another control character (from a
    comment or a name in the subject) would let it forge headers, and Python refuses it."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def _message(sender: str, content: Document) -> bytes:
    message = EmailMessage(policy=MAIL_POLICY)
    message["From"], message["To"] = _header(sender), _header(content["to"])
    message["Subject"] = _header(content["subject"])
    message.set_content(content["text"])
    return message.as_bytes()  # flattened here: aiosmtplib would fold with its own policy


async def send_email(
    smtp: SmtpSettings | None, policy: UrlPolicy, delivery: Document, *, timeout_s: float
) -> Document:
    """One attempt of an email delivery through the mail server, which the URL policy
    must allow like any outbound address (checked again here, its resolved addresses
    too); its record keeps the server's reply code (250: accepted) so that the
    webhooks' schedule decides its retries. Without a mail server, refused by the
    policy, or an email that cannot be written, the attempt is refused, which ends the
    delivery in the log (replayable once the cause is fixed)."""
    at = utcnow()
    started = time.perf_counter()
    record = attempt_record(at)
    if smtp is None:
        record["error"], record["refused"] = NO_SMTP, True
        return record
    try:
        content = json.loads(delivery["body"])
        message = _message(smtp.sender, content)
        sock = await policy.connect(smtp.host, smtp.port, timeout_s=timeout_s)
        try:
            _, reply = await aiosmtplib.send(
                message,
                sender=smtp.sender,
                recipients=[content["to"]],
                hostname=smtp.host,  # what TLS checks the certificate against
                sock=sock,
                username=smtp.username or None,
                password=smtp.password or None,
                use_tls=smtp.security == "ssl",
                start_tls=smtp.security == "starttls",
                timeout=timeout_s,
            )
        finally:
            sock.close()
        record["status_code"], record["response"] = 250, reply[:SNIPPET_BYTES]
    except UrlRefused as exc:
        record["error"], record["refused"] = f"Почтовый сервер: {exc.message}", True
    except (ValueError, TypeError, KeyError) as exc:  # the email itself cannot be written
        record["error"], record["refused"] = f"Письмо не составить: {exc}"[:500], True
    except aiosmtplib.SMTPResponseException as exc:
        record["status_code"], record["error"] = exc.code, exc.message[:500]
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
    record["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return record
