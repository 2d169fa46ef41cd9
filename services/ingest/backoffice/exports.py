"""Excel exports of the calls list and of an analytics table: one sheet with a header
row, written in openpyxl's streaming mode; text always as text."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from services.ingest.backoffice.calls import CallRow
from services.ingest.backoffice.reports import TableRow
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


def xlsx(title: str, columns: Sequence[tuple[str, str]], rows: Iterable[dict[str, Any]]) -> bytes:
    """A workbook whose columns are (key, header) pairs and whose rows are dicts by key."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    header = []
    for _, name in columns:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = Font(bold=True)
        header.append(cell)
    sheet.append(header)
    for row in rows:
        sheet.append([_cell(sheet, row.get(key)) for key, _ in columns])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


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


def calls_workbook(rows: list[CallRow], zone: ZoneInfo) -> bytes:
    """The calls list as an Excel sheet, times in the zone."""
    flat = [
        {
            **row,
            "received_at": local_time(row["received_at"], zone),
            "score_text": f"{row['score']['passed']}/{row['score']['applicable']}"
            if row["score"]
            else None,
            "score_percent": row["score"]["percent"] if row["score"] else None,
        }
        for row in rows
    ]
    return xlsx("Коммуникации", CALL_COLUMNS, flat)


def table_workbook(table: Document, rows: list[TableRow], zone: ZoneInfo) -> bytes:
    """An analytics table's rows as an Excel sheet: the call, then the table's fields."""
    columns = [
        ("received_at", "Дата"),
        ("call_id", "ID звонка"),
        ("deal_id", "Сделка"),
        ("manager_name", "Менеджер"),
    ] + [(f"row.{field['key']}", field.get("name") or field["key"]) for field in table["fields"]]
    flat = [
        {
            **row,
            "received_at": local_time(row["received_at"], zone),
            **{f"row.{key}": value for key, value in row["row"].items()},
        }
        for row in rows
    ]
    return xlsx(table["name"], columns, flat)
