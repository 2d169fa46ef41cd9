"""Analytics table rows: each field extracted by its method and coerced to its type.

A value that cannot be extracted or does not fit its type becomes null, and the
reason is kept beside the row so a person can see why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.analyzer.phrases import Token, find_phrase
from services.analyzer.talk import TalkMetrics
from services.analyzer.transcript import Utterance
from shared.scripts import TableField
from shared.words import WORD, is_number, numbers_read

LLM_NOT_CONFIGURED = "метод llm не настроен (ROP_LLM_BASE_URL)"
TRUE_WORDS = {"true", "yes", "да", "1", "есть"}
FALSE_WORDS = {"false", "no", "нет", "0"}
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d.%m.%y", "%d/%m/%Y")


class NotExtracted(ValueError):
    """The field has no valid value for this call; the message says why (Russian)."""


@dataclass(frozen=True)
class Row:
    """A table row: typed values, and why any value is null."""

    values: dict[str, Any]
    reasons: dict[str, str] = field(default_factory=dict)


def coerce(spec: TableField, raw: Any) -> Any:
    """Convert an extracted value to the field's type, or raise NotExtracted."""
    if raw is None:
        raise NotExtracted("значение не найдено")
    if spec.type == "number":
        return _number(raw)
    if spec.type == "boolean":
        return _boolean(raw)
    if spec.type == "date":
        return _date(raw)
    text = str(raw).strip()
    if spec.type == "enum":
        options = {option.lower(): option for option in spec.options or []}
        if text.lower() not in options:
            raise NotExtracted(f"«{text}» нет среди вариантов")
        return options[text.lower()]
    if not text:
        raise NotExtracted("пустое значение")
    return text if spec.type == "long_text" else text[:500]


def _number(raw: Any) -> float | int:
    """A number as people and ASR write it: «350 000», «500,000», «12,5», «350 тысяч»,
    «триста пятьдесят тысяч рублей» (`shared/words.py` reads them); more than one
    number, or none, is no value."""
    if isinstance(raw, bool):
        raise NotExtracted("ожидается число")
    if isinstance(raw, int | float):
        return raw
    values = [float(read) for read, _, _ in numbers_read(WORD.findall(str(raw))) if is_number(read)]
    if len(values) != 1:
        raise NotExtracted(f"«{raw}» не число")
    (value,) = values
    return int(value) if value.is_integer() else value


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise NotExtracted(f"«{raw}» не да/нет")


def _date(raw: Any) -> str:
    if isinstance(raw, date | datetime):
        return raw.isoformat()[:10]
    text = str(raw).strip()
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    raise NotExtracted(f"«{raw}» не дата")


def _extract(
    spec: TableField,
    utterances: Sequence[Utterance],
    tokens: Sequence[Token],
    metrics: TalkMetrics,
    llm_values: Mapping[str, Any] | None,
) -> Any:
    if spec.method == "metric":
        return getattr(metrics, spec.metric or "")
    if spec.method == "phrases":
        quote = next(
            (
                found
                for phrase in spec.phrases or []
                if (found := find_phrase(phrase, tokens, speaker=spec.speaker)) is not None
            ),
            None,
        )
        if spec.type == "boolean":
            return quote is not None
        return quote.text if quote else None
    if spec.method == "regex":
        pattern = re.compile(spec.pattern or "", re.IGNORECASE)
        for line in utterances:
            if spec.speaker != "any" and line.speaker != spec.speaker:
                continue
            match = pattern.search(line.text)
            if match:
                return match.group(1) if pattern.groups else match.group(0)
        return False if spec.type == "boolean" else None
    if llm_values is None:
        raise NotExtracted(LLM_NOT_CONFIGURED)
    return llm_values.get(spec.key)


def build_row(
    fields: Sequence[TableField],
    *,
    utterances: Sequence[Utterance],
    tokens: Sequence[Token],
    metrics: TalkMetrics,
    llm_values: Mapping[str, Any] | None = None,
) -> Row:
    """Extract and type every field of a table for one call.

    `llm_values` are the model's raw answers for `llm` fields; None when no LLM is set up.
    """
    values: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for spec in fields:
        try:
            raw = _extract(spec, utterances, tokens, metrics, llm_values)
            values[spec.key] = coerce(spec, raw)
        except NotExtracted as exc:
            values[spec.key] = None
            reasons[spec.key] = str(exc)
    return Row(values, reasons)
