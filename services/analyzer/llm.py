"""The `llm` method: an OpenAI-compatible chat model judges a stage or fills table fields.

The model answers JSON of a fixed schema. Quotes it gives as evidence must be found
in the transcript (they get their real timestamps from it); a verdict with a quote
that is not there is marked unverified. Timeouts, connection errors and answers
that are not the schema are retried, then the stage is reported as not evaluated:
an LLM failure never fails the call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import openai
from openai import AsyncOpenAI
from pydantic import BaseModel, Field, ValidationError
from rapidfuzz import fuzz
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from services.analyzer.phrases import Quote
from services.analyzer.scoring import StageVerdict
from services.analyzer.transcript import Utterance
from shared.logging import get_logger
from shared.scripts import Stage, TableField

log = get_logger(__name__)

SPEAKER_NAMES = {"manager": "Менеджер", "client": "Клиент"}
QUOTE_MIN_SCORE = 90.0
RETRYABLE = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.InternalServerError,
    openai.RateLimitError,
    ValueError,
)

STAGE_SYSTEM = (
    "Ты оцениваешь телефонный звонок менеджера по продажам по одному этапу скрипта. "
    "Отвечай только JSON по заданной схеме. Цитаты приводи дословно из расшифровки."
)
TABLE_SYSTEM = (
    "Ты извлекаешь данные из расшифровки звонка. Отвечай только JSON по заданной схеме; "
    "если значения нет в разговоре, верни null."
)


class QuoteAnswer(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


class StageAnswer(BaseModel):
    """What the model must answer about a stage."""

    applicable: bool
    completion: float = Field(ge=0, le=100)
    quotes: list[QuoteAnswer] = Field(default_factory=list, max_length=10)
    recommendation: str | None = Field(None, max_length=2000)


def transcript_text(utterances: Sequence[Utterance]) -> str:
    """The transcript as the model reads it: one timed line per utterance."""
    return "\n".join(
        f"[{line.start_s:.1f} с] {SPEAKER_NAMES[line.speaker]}: {line.text}" for line in utterances
    )


def locate_quote(text: str, utterances: Sequence[Utterance]) -> Quote | None:
    """Find a quote in the transcript (tolerating punctuation and case); None if absent."""
    wanted = " ".join(text.lower().split())
    best: tuple[float, Utterance] | None = None
    for line in utterances:
        score = fuzz.partial_ratio(wanted, line.text.lower())
        if score >= QUOTE_MIN_SCORE and (best is None or score > best[0]):
            best = (score, line)
    if best is None:
        return None
    line = best[1]
    return Quote(text=text, start_s=line.start_s, end_s=line.end_s, speaker=line.speaker)


class LlmJudge:
    """Asks the model; every failure ends in a result, not an exception."""

    def __init__(self, client: AsyncOpenAI, model: str, *, attempts: int = 3) -> None:
        self._client = client
        self._model = model
        self._attempts = attempts

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    async def _ask(self, system: str, user: str, schema_name: str, schema: dict[str, Any]) -> Any:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=0.5, max=5),
            retry=retry_if_exception_type(RETRYABLE),
            reraise=True,
        ):
            with attempt:
                response = await self._client.chat.completions.create(
                    model=self._model,
                    temperature=0,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": schema_name, "schema": schema, "strict": True},
                    },
                )
                content = response.choices[0].message.content or ""
                return json.loads(content)  # a ValueError is retried
        raise AssertionError("unreachable")

    async def judge_stage(self, stage: Stage, utterances: Sequence[Utterance]) -> StageVerdict:
        """A verdict for an `llm` stage; not evaluated when the model fails."""
        user = (
            f"Этап: {stage.name}\nКритерии: {stage.criteria}\n"
            f"Этап не применим, если: {stage.ignore_when or 'всегда применим'}\n\n"
            f"Расшифровка:\n{transcript_text(utterances)}"
        )
        try:
            raw = await self._ask(STAGE_SYSTEM, user, "stage_verdict", _STAGE_SCHEMA)
            answer = StageAnswer.model_validate(raw)
        except (*RETRYABLE, openai.APIError, ValidationError) as exc:
            log.warning("llm_stage_not_evaluated", stage=stage.name, error=type(exc).__name__)
            return StageVerdict.not_evaluated(stage.name, f"LLM не ответил: {type(exc).__name__}")
        located = [locate_quote(quote.text, utterances) for quote in answer.quotes]
        evidence = [quote for quote in located if quote is not None]
        notes = (
            []
            if len(evidence) == len(located)
            else ["не подтверждено: цитаты LLM не найдены в расшифровке"]
        )
        return StageVerdict(
            name=stage.name,
            applicable=answer.applicable,
            completion=round(answer.completion, 2) if answer.applicable else 0.0,
            passed=answer.applicable and answer.completion >= stage.threshold,
            evaluated=True,
            evidence=evidence,
            recommendation=answer.recommendation,
            notes=notes,
        )

    async def extract_fields(
        self, fields: Sequence[TableField], utterances: Sequence[Utterance]
    ) -> dict[str, Any]:
        """Raw values of the `llm` fields of a table (typed later); {} when the model fails."""
        if not fields:
            return {}
        questions = "\n".join(f"- {spec.key}: {spec.prompt}" for spec in fields)
        schema = {
            "type": "object",
            "properties": {
                spec.key: {"type": ["string", "number", "boolean", "null"]} for spec in fields
            },
            "required": [spec.key for spec in fields],
            "additionalProperties": False,
        }
        user = f"Поля:\n{questions}\n\nРасшифровка:\n{transcript_text(utterances)}"
        try:
            raw = await self._ask(TABLE_SYSTEM, user, "table_row", schema)
        except (*RETRYABLE, openai.APIError) as exc:
            log.warning("llm_fields_not_extracted", error=type(exc).__name__)
            return {}
        return raw if isinstance(raw, dict) else {}


_STAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "applicable": {"type": "boolean"},
        "completion": {"type": "number", "minimum": 0, "maximum": 100},
        "quotes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
                "additionalProperties": False,
            },
        },
        "recommendation": {"type": ["string", "null"]},
    },
    "required": ["applicable", "completion", "quotes", "recommendation"],
    "additionalProperties": False,
}
