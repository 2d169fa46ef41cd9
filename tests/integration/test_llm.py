"""The `llm` method against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from services.analyzer.llm import LlmJudge
from services.analyzer.transcript import Utterance, Word
from shared.scripts import Stage, TableField
from tests.fakes import FakeLlm, answer, slow

STAGE = Stage.model_validate(
    {
        "name": "Следующий шаг",
        "method": "llm",
        "threshold": 50,
        "criteria": "Договорился о конкретной дате следующего контакта",
        "ignore_when": "Клиент отказался от покупки",
    }
)
LINES = [
    Utterance(
        "manager",
        1.0,
        3.0,
        "Добрый день, компания Ромашка.",
        (Word("Добрый", 1.0, 1.3), Word("день,", 1.3, 1.6)),
    ),
    Utterance("client", 4.0, 6.0, "Бюджет около пятисот тысяч.", (Word("Бюджет", 4.0, 4.4),)),
    Utterance(
        "manager",
        20.0,
        23.5,
        "Давайте созвонимся в четверг в десять.",
        (Word("Давайте", 20.0, 20.4),),
    ),
]


GOOD = {
    "applicable": True,
    "completion": 80,
    "quotes": [{"text": "давайте созвонимся в четверг"}],
    "recommendation": "Назвать время",
}


async def test_a_valid_answer_becomes_a_verified_verdict(
    fake_llm: tuple[FakeLlm, LlmJudge],
) -> None:
    llm, judge = fake_llm
    llm.replies = [answer(GOOD)]
    verdict = await judge.judge_stage(STAGE, LINES)
    assert verdict.evaluated
    assert verdict.passed
    assert verdict.completion == 80
    (quote,) = verdict.evidence
    assert (quote.speaker, quote.start_s) == ("manager", 20.0)
    assert verdict.notes == []
    assert verdict.recommendation == "Назвать время"

    (request,) = llm.requests
    assert request["model"] == "fake-model"
    user = request["messages"][-1]["content"]
    assert "Договорился о конкретной дате" in user
    assert "Клиент отказался от покупки" in user
    assert "[20.0 с] Менеджер: Давайте созвонимся в четверг в десять." in user
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["applicable", "completion", "quotes", "recommendation"]


async def test_a_quote_not_in_the_transcript_marks_the_verdict_unverified(
    fake_llm: tuple[FakeLlm, LlmJudge],
) -> None:
    llm, judge = fake_llm
    llm.replies = [answer({**GOOD, "quotes": [{"text": "мы подпишем договор завтра"}]})]
    verdict = await judge.judge_stage(STAGE, LINES)
    assert verdict.evaluated
    assert verdict.evidence == []
    assert verdict.notes == ["не подтверждено: цитаты LLM не найдены в расшифровке"]


async def test_malformed_json_is_retried_then_not_evaluated(
    fake_llm: tuple[FakeLlm, LlmJudge],
) -> None:
    llm, judge = fake_llm
    llm.replies = [answer("{not json"), answer(GOOD)]
    assert (await judge.judge_stage(STAGE, LINES)).evaluated
    assert len(llm.requests) == 2

    llm.requests.clear()
    llm.replies = [answer("{not json")]
    verdict = await judge.judge_stage(STAGE, LINES)
    assert not verdict.evaluated
    assert len(llm.requests) == 2
    assert verdict.notes[0].startswith("LLM не ответил")


async def test_an_answer_outside_the_schema_is_not_evaluated(
    fake_llm: tuple[FakeLlm, LlmJudge],
) -> None:
    llm, judge = fake_llm
    llm.replies = [answer({**GOOD, "completion": 180})]
    verdict = await judge.judge_stage(STAGE, LINES)
    assert not verdict.evaluated


async def test_a_timeout_is_retried_then_not_evaluated(fake_llm: tuple[FakeLlm, LlmJudge]) -> None:
    llm, judge = fake_llm
    llm.replies = [slow()]
    verdict = await judge.judge_stage(STAGE, LINES)
    assert not verdict.evaluated
    assert len(llm.requests) == 2
    assert "Timeout" in verdict.notes[0]


async def test_not_applicable_stage(fake_llm: tuple[FakeLlm, LlmJudge]) -> None:
    llm, judge = fake_llm
    llm.replies = [answer({**GOOD, "applicable": False})]
    verdict = await judge.judge_stage(STAGE, LINES)
    assert not verdict.applicable
    assert not verdict.passed


async def test_table_fields_are_asked_in_one_request(fake_llm: tuple[FakeLlm, LlmJudge]) -> None:
    llm, judge = fake_llm
    llm.replies = [answer({"city": "Казань", "budget": "500000"})]
    fields = [
        TableField.model_validate(
            {"key": "city", "type": "text", "method": "llm", "prompt": "Город клиента"}
        ),
        TableField.model_validate(
            {"key": "budget", "type": "number", "method": "llm", "prompt": "Бюджет в рублях"}
        ),
    ]
    values = await judge.extract_fields(fields, LINES)
    assert values == {"city": "Казань", "budget": "500000"}
    schema = llm.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["city", "budget"]
    assert "- city: Город клиента" in llm.requests[0]["messages"][-1]["content"]
