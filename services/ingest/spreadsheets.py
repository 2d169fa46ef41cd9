"""Excel exports: one sheet with a header row, written in openpyxl's streaming mode."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

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
