"""Excel exports of the calls list and of an analytics table: one sheet with a header
row, written in openpyxl's streaming mode a batch of rows at a time, off the event loop,
into a temporary file (memory holds a batch, not the export); text always as text."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from services.ingest.backoffice.calls import CallRow
from services.ingest.backoffice.reports import TableRow
from services.ingest.backoffice.search import SearchRow
from services.ingest.backoffice.trust import TrustReport
from shared.mongo import Document

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _cell(sheet: Any, value: Any) -> Any:
    """A cell of a value; text always stays text. openpyxl would write a string that
    starts with `=` as a live formula, and exported strings come from CRMs and models."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    cell = WriteOnlyCell(sheet, value=str(value))
    cell.data_type = "s"
    return cell


BATCH = 1000


async def xlsx(
    title: str, columns: Sequence[tuple[str, str]], rows: AsyncIterable[dict[str, Any]]
) -> IO[bytes]:
    """A workbook whose columns are (key, header) pairs and whose rows are dicts by key,
    as a temporary file read from its start."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    header = []
    for _, name in columns:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = Font(bold=True)
        header.append(cell)
    sheet.append(header)

    def append(batch: list[dict[str, Any]]) -> None:
        for row in batch:
            sheet.append([_cell(sheet, row.get(key)) for key, _ in columns])

    batch: list[dict[str, Any]] = []
    async for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            await asyncio.to_thread(append, batch)
            batch = []
    await asyncio.to_thread(append, batch)
    file = tempfile.TemporaryFile()  # noqa: SIM115 (the response closes it)
    await asyncio.to_thread(book.save, file)
    file.seek(0)
    return file


CALL_COLUMNS = (
    ("received_at", "Дата"),
    ("call_id", "ID звонка"),
    ("deal_id", "Сделка"),
    ("manager_name", "Менеджер"),
    ("manager_id", "ID менеджера"),
    ("stage", "Воронка"),
    ("deal_stage_id", "Этап"),
    ("status_label", "Статус"),
    ("score_text", "Оценка"),
    ("score_percent", "Оценка, %"),
    ("duration_s", "Длительность, с"),
    ("talk_ratio", "Доля речи менеджера"),
    ("reason", "Причина"),
)


def local_time(iso_time: str, zone: ZoneInfo) -> str:
    """An ISO instant as people read it in their zone: 27.11.2026 17:03."""
    return f"{datetime.fromisoformat(iso_time).astimezone(zone):%d.%m.%Y %H:%M}"


async def calls_workbook(rows: AsyncIterable[CallRow], zone: ZoneInfo) -> IO[bytes]:
    """The calls list as an Excel sheet, times in the zone."""
    flat = (
        {
            **row,
            "received_at": local_time(row["received_at"], zone),
            "score_text": f"{row['score']['passed']}/{row['score']['applicable']}"
            if row["score"]
            else None,
            "score_percent": row["score"]["percent"] if row["score"] else None,
        }
        async for row in rows
    )
    return await xlsx("Коммуникации", CALL_COLUMNS, flat)


SPEAKER_LABELS = {"manager": "Менеджер", "client": "Клиент"}


def clock(seconds: float | None) -> str:
    """Seconds as people read a call's moment: m:ss (or h:mm:ss)."""
    if seconds is None:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


async def search_workbook(rows: AsyncIterable[SearchRow], zone: ZoneInfo) -> IO[bytes]:
    """The calls found as an Excel sheet: the call, how often it was said, and where."""
    columns = (
        *CALL_COLUMNS[:5],
        ("hits", "Упоминаний"),
        ("snippets_text", "Где сказано"),
        ("score_percent", "Оценка, %"),
    )
    flat = (
        {
            **row,
            "received_at": local_time(row["received_at"], zone),
            "score_percent": row["score"]["percent"] if row["score"] else None,
            "snippets_text": "\n".join(
                f"[{clock(snippet['start_s'])}] "
                f"{SPEAKER_LABELS.get(snippet['speaker'], snippet['speaker'])}: "
                f"{snippet['before']} {snippet['hit'].upper()} {snippet['after']}".strip()
                for snippet in row["snippets"]
            ),
        }
        async for row in rows
    )
    return await xlsx("Поиск", columns, flat)


async def table_workbook(
    table: Document, rows: AsyncIterable[TableRow], zone: ZoneInfo
) -> IO[bytes]:
    """An analytics table's rows as an Excel sheet: the call, then the table's fields."""
    columns = [
        ("received_at", "Дата"),
        ("call_id", "ID звонка"),
        ("deal_id", "Сделка"),
        ("manager_name", "Менеджер"),
    ] + [(f"row.{field['key']}", field.get("name") or field["key"]) for field in table["fields"]]
    flat = (
        {
            **row,
            "received_at": local_time(row["received_at"], zone),
            **{f"row.{key}": value for key, value in row["row"].items()},
        }
        async for row in rows
    )
    return await xlsx(table["name"], columns, flat)


TRUST_COLUMNS = (
    ("template_name", "Шаблон"),
    ("version", "Версия"),
    ("stage", "Этап"),
    ("method", "Метод"),
    ("kind_label", "Проверка"),
    ("reviewed", "Проверено"),
    ("agreement", "Согласие, %"),
    ("kappa", "κ Коэна"),
    ("machine_passed_human_failed", "ИИ: выполнен, человек: нет"),
    ("machine_failed_human_passed", "ИИ: не выполнен, человек: да"),
    ("not_judged", "ИИ не оценил"),
)


async def trust_workbook(report: TrustReport) -> IO[bytes]:
    """The trust report's stages as an Excel sheet."""

    async def rows() -> AsyncIterator[dict[str, Any]]:
        for row in report["stages"]:
            template = row["template"]
            yield {**row, "template_name": template["name"], "version": template.get("version", 1)}

    return await xlsx("Качество оценки", TRUST_COLUMNS, rows())
