"""Russian calls through the analysis as a CRM sends them: Festival's Russian voice and a
second speaker made by shifting its pitch and formants (the shift varies from test to
test), 8 kHz telephone codecs, mono mixes, noise and echo, scored by the shipped
multilingual model against a Russian script."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from devtools.samples import Line, Voices, word_error_rate
from services.analyzer.asr import WhisperTranscriber
from services.analyzer.handlers import Analyzer
from services.analyzer.voice_encoder import VoiceEncoder
from services.ingest.backoffice import catalog
from shared.connection import update_connection_settings
from shared.scripts import Binding, Table, Template
from shared.settings import Settings
from tests.analysis import analyse, analyzer, stages, stored_call
from tests.helpers import LOCAL_POLICY

pytestmark = pytest.mark.timeout(600)

SCRIPT = {
    "name": "Первичный звонок",
    "stages": [
        {
            "name": "Приветствие",
            "threshold": 100,
            "points": [
                {
                    "text": "Представился",
                    "weight": 50,
                    "speaker": "manager",
                    "within_s": 30,
                    "phrases": ["меня зовут"],
                },
                {
                    "text": "Назвал компанию",
                    "weight": 50,
                    "speaker": "manager",
                    "within_s": 30,
                    "phrases": ["компания ромашка"],
                },
            ],
        },
        {
            "name": "Удобно ли говорить",
            "threshold": 100,
            "points": [
                {
                    "text": "Спросил, удобно ли говорить",
                    "weight": 100,
                    "speaker": "manager",
                    "phrases": ["удобно говорить"],
                }
            ],
        },
        {
            "name": "Бюджет",
            "threshold": 100,
            "points": [
                {
                    "text": "Спросил о бюджете",
                    "weight": 100,
                    "speaker": "manager",
                    "phrases": ["какой у вас бюджет"],
                }
            ],
        },
        {
            "name": "Следующий шаг",
            "threshold": 100,
            "points": [
                {
                    "text": "Договорился о встрече",
                    "weight": 100,
                    "speaker": "manager",
                    "phrases": ["договоримся о встрече", "назначим встречу"],
                }
            ],
        },
        {
            "name": "Вежливость",
            "threshold": 100,
            "points": [
                {
                    "text": "Не грубил",
                    "weight": 100,
                    "speaker": "manager",
                    "forbidden": True,
                    "phrases": ["это не моя проблема"],
                }
            ],
        },
    ],
}
TABLE = {
    "name": "Сделки",
    "webhook": {"url": "https://crm.example/hooks/table"},
    "fields": [
        {
            "key": "budget",
            "type": "number",
            "method": "regex",
            "pattern": r"бюджет ([\d\s]+(?:тысяч)?)",
            "speaker": "client",
        }
    ],
}
# The client answers first; the manager says every point of the script.
GOOD_CALL: list[Line] = [
    ("client", 1.0, "Алло, слушаю."),
    ("manager", 3.0, "Добрый день, меня зовут Анна, я звоню из компании Ромашка."),
    ("client", 9.0, "Да, здравствуйте, слушаю вас."),
    ("manager", 12.0, "Вам удобно сейчас говорить?"),
    ("client", 14.5, "Да, у меня есть пара минут."),
    ("manager", 17.5, "Какой у вас бюджет на оформление офиса?"),
    ("client", 21.0, "Наш бюджет пятьсот тысяч рублей."),
    ("manager", 25.0, "Давайте договоримся о встрече в четверг."),
    ("client", 28.5, "Хорошо, в четверг подходит."),
    ("manager", 31.0, "Спасибо за ваше время, до свидания."),
]
GOOD_CALL_S = 36.0
ALL_PASSED = {
    "Приветствие": True,
    "Удобно ли говорить": True,
    "Бюджет": True,
    "Следующий шаг": True,
    "Вежливость": True,
}


@pytest.fixture
async def deps(
    settings: Settings, multilingual: WhisperTranscriber, voice_encoder: VoiceEncoder
) -> AsyncIterator[Analyzer]:
    async with analyzer(settings, multilingual, voice_encoder) as running:
        for kind, model, document in (
            (catalog.TEMPLATE, Template, SCRIPT),
            (catalog.TABLE, Table, TABLE),
        ):
            saved = await catalog.create(
                running.db, kind, model.model_validate(document), policy=LOCAL_POLICY
            )
            if kind is catalog.TEMPLATE:
                binding = {"template_id": saved["_id"], "webhook": {"url": "https://crm.example/h"}}
                await catalog.create(
                    running.db,
                    catalog.BINDING,
                    Binding.model_validate(binding),
                    policy=LOCAL_POLICY,
                )
        yield running


async def analysed(
    deps: Analyzer, lines: list[Line], *, duration_s: float = GOOD_CALL_S, **sound: Any
) -> dict[str, Any]:
    stereo = sound.pop("stereo", True)
    container = sound.pop("container", "mp3")
    envelope, event = await stored_call(
        deps, lines, stereo=stereo, duration_s=duration_s, container=container, sound=sound
    )
    return await analyse(deps, envelope, event)


def passed(task: dict[str, Any]) -> dict[str, bool]:
    return {name: stage["passed"] for name, stage in stages(task).items()}


def evidence_speakers(task: dict[str, Any]) -> set[str]:
    return {quote["speaker"] for stage in stages(task).values() for quote in stage["evidence"]}


def wer(task: dict[str, Any], lines: list[Line]) -> float:
    errors, words = word_error_rate(
        [text for _, _, text in lines], [line["text"] for line in task["transcript"]]
    )
    return errors / words


# (stereo, container, encoding, sample rate, noise SNR, echo, the two voices' shifts)
TELEPHONE = [
    pytest.param(True, "mp3", None, 16000, None, None, (1.0, 1.28), id="stereo-mp3"),
    pytest.param(False, "wav", "ulaw", 8000, None, None, (0.94, 1.22), id="mono-ulaw"),
    pytest.param(False, "wav", "alaw", 8000, 20.0, None, (1.04, 1.3), id="mono-alaw-noise"),
    pytest.param(False, "wav", "gsm", 8000, None, None, (0.97, 1.25), id="mono-gsm"),
    pytest.param(True, "mp3", "mp3-32k", 8000, 20.0, None, (1.02, 1.2), id="stereo-mp3-32k"),
    pytest.param(True, "ogg", "opus", 8000, None, None, (0.95, 1.27), id="stereo-opus"),
    pytest.param(True, "wav", "ulaw", 8000, None, -24.0, (1.0, 1.24), id="stereo-ulaw-echo"),
]


@pytest.mark.parametrize(
    ("stereo", "container", "encoding", "rate", "noise", "echo", "shifts"), TELEPHONE
)
async def test_a_russian_call_is_scored_as_it_was_said(
    deps: Analyzer,
    stereo: bool,
    container: str,
    encoding: str | None,
    rate: int,
    noise: float | None,
    echo: float | None,
    shifts: tuple[float, float],
) -> None:
    manager, client = (f"festival:ru@{shift}" for shift in shifts)
    task = await analysed(
        deps,
        GOOD_CALL,
        stereo=stereo,
        container=container,
        encoding=encoding,
        sample_rate_hz=rate,
        noise_snr_db=noise,
        leak_db=echo,
        voices=Voices(manager, client),
    )

    assert passed(task) == ALL_PASSED
    assert evidence_speakers(task) == {"manager"}
    assert task["roles"]["method"] == ("channels" if stereo else "cues")
    # Festival's voice shifted and sent at 8 kHz is heard with 20-30 % of its words wrong
    # by the base model (`make bench-analyze` measures the set); this bounds one call.
    assert wer(task, GOOD_CALL) <= 0.3, task["transcript"]
    assert task["results"]["language"] == {
        "code": "ru",
        "setting": "ru",
        "detected": "ru",
        "probability": pytest.approx(1.0, abs=0.3),
        "mismatch": False,
    }
    (row,) = task["results"]["tables"]
    assert row["row"]["budget"] == 500000


# The client says the script's phrases and its forbidden one; the manager says none.
CLIENT_SAYS_IT: list[Line] = [
    ("manager", 1.0, "Добрый день."),
    ("client", 2.5, "Здравствуйте, меня зовут Олег, я из компании Ромашка."),
    ("manager", 8.5, "Слушаю вас."),
    ("client", 10.5, "Вам удобно сейчас говорить? Давайте договоримся о встрече."),
    ("manager", 16.5, "Хорошо, я подумаю."),
    ("client", 19.0, "Это не моя проблема, разбирайтесь сами."),
]


async def test_what_the_client_says_is_not_the_managers(deps: Analyzer) -> None:
    task = await analysed(
        deps, CLIENT_SAYS_IT, duration_s=25, voices=Voices("festival:ru@0.96", "festival:ru@1.26")
    )

    assert passed(task) == {
        "Приветствие": False,
        "Удобно ли говорить": False,
        "Бюджет": False,
        "Следующий шаг": False,
        "Вежливость": True,  # the client's rudeness is not the manager's
    }
    assert evidence_speakers(task) == set()
    said = " ".join(line["text"] for line in task["transcript"] if line["speaker"] == "client")
    assert "договоримся" in said.lower()  # heard, and held to its speaker


RUDE_MANAGER: list[Line] = [
    ("client", 1.0, "Алло."),
    ("manager", 2.5, "Добрый день, меня зовут Анна, компания Ромашка."),
    ("client", 7.5, "У нас проблемы с доставкой."),
    ("manager", 10.5, "Это не моя проблема, разбирайтесь сами."),
]


async def test_a_forbidden_phrase_of_the_manager_fails_its_stage(deps: Analyzer) -> None:
    task = await analysed(
        deps,
        RUDE_MANAGER,
        duration_s=16,
        stereo=False,
        container="wav",
        encoding="ulaw",
        sample_rate_hz=8000,
        voices=Voices("festival:ru@1.03", "festival:ru@1.29"),
    )

    politeness = stages(task)["Вежливость"]
    assert not politeness["passed"]
    (quote,) = politeness["evidence"]
    assert quote["speaker"] == "manager"
    assert quote["start_s"] == pytest.approx(10.5, abs=1.5)
    assert passed(task)["Приветствие"]


LATE_GREETING: list[Line] = [
    ("client", 1.0, "Алло, слушаю."),
    ("manager", 3.0, "Вам удобно сейчас говорить?"),
    ("client", 6.0, "Да, удобно."),
    ("manager", 8.5, "Мы доставляем свежие цветы в офисы каждое утро."),
    ("client", 13.5, "Интересно, расскажите подробнее."),
    ("manager", 18.0, "Первая неделя доставки бесплатно."),
    ("client", 22.0, "А сколько это стоит?"),
    ("manager", 25.0, "Это зависит от размера офиса."),
    ("client", 29.0, "Понятно."),
    ("manager", 32.0, "Простите, меня зовут Анна, я звоню из компании Ромашка."),
]


async def test_a_greeting_after_its_time_window_does_not_count(deps: Analyzer) -> None:
    task = await analysed(
        deps, LATE_GREETING, duration_s=40, voices=Voices("festival:ru@0.98", "festival:ru@1.21")
    )

    greeting = stages(task)["Приветствие"]
    assert (greeting["passed"], greeting["completion"]) == (False, 0)
    said = " ".join(line["text"] for line in task["transcript"]).lower()
    assert "меня зовут" in said  # said, but after the first 30 s
    assert passed(task)["Удобно ли говорить"]


ENGLISH_CALL: list[Line] = [
    ("client", 1.0, "Hello, who is calling?"),
    ("manager", 3.0, "Good afternoon, my name is Anna from the flower company."),
    ("client", 8.0, "Yes, I can talk for a minute."),
    ("manager", 11.0, "What budget do you have for the office?"),
    ("client", 14.5, "Our budget is about five thousand dollars."),
]


async def test_the_call_language_is_identified_when_asked(deps: Analyzer) -> None:
    await update_connection_settings(deps.db, {"call_language": "auto"})

    russian = await analysed(deps, GOOD_CALL, voices=Voices("festival:ru@1.01", "festival:ru@1.23"))
    english = await analysed(
        deps, ENGLISH_CALL, duration_s=20, voices=Voices("festival:slt", "festival:kal")
    )

    assert russian["results"]["language"]["code"] == "ru"
    assert russian["results"]["language"]["setting"] == "auto"
    assert passed(russian) == ALL_PASSED
    assert english["results"]["language"]["code"] == "en"
    assert english["results"]["language"]["mismatch"] is False
    said = " ".join(line["text"] for line in english["transcript"]).lower()
    assert "flower company" in said


async def test_an_english_call_under_russian_is_recorded_as_english(deps: Analyzer) -> None:
    task = await analysed(
        deps, ENGLISH_CALL, duration_s=20, voices=Voices("festival:slt@0.95", "festival:kal")
    )

    language = task["results"]["language"]
    assert (language["code"], language["setting"], language["detected"]) == ("ru", "ru", "en")
    assert language["probability"] >= 0.5
    assert language["mismatch"] is True


# A message left on a machine: one voice on a mono line, nobody answers.
VOICEMAIL: list[Line] = [
    ("manager", 1.0, "Добрый день, меня зовут Анна, я звоню из компании Ромашка."),
    ("manager", 7.0, "Хотела узнать, удобно ли вам сейчас говорить о цветах для офиса."),
    ("manager", 13.0, "Какой у вас бюджет на оформление?"),
    ("manager", 17.0, "Давайте договоримся о встрече, перезвоните мне, пожалуйста."),
    ("manager", 23.0, "Мы доставляем свежие цветы каждое утро."),
    ("manager", 27.5, "Спасибо, до свидания."),
]


# One voice whose sentences the speaker embeddings set 0.93-0.94 apart (others lie closer).
@pytest.mark.parametrize("shift", [1.0, 1.1])
async def test_a_mono_call_with_one_voice_is_one_speaker(deps: Analyzer, shift: float) -> None:
    task = await analysed(
        deps,
        VOICEMAIL,
        duration_s=32,
        stereo=False,
        container="wav",
        encoding="gsm",
        sample_rate_hz=8000,
        voices=Voices(f"festival:ru@{shift}", "festival:ru"),
    )

    assert {line["speaker"] for line in task["transcript"]} == {"manager"}
    assert task["results"]["metrics"]["talk_time_client_s"] == 0
    assert passed(task) == ALL_PASSED


async def test_minutes_of_noise_and_silence_add_no_words(deps: Analyzer) -> None:
    """Whisper writes «Продолжение следует…» and the like where nobody speaks: a call of
    one line and two minutes of line noise holds that line only."""
    task = await analysed(
        deps,
        [("manager", 2.0, "Алло, добрый день.")],
        duration_s=120,
        container="wav",
        encoding="ulaw",
        sample_rate_hz=8000,
        noise_snr_db=10.0,
        voices=Voices("festival:ru@1.02", "festival:ru@1.24"),
    )

    (line,) = task["transcript"]
    assert line["speaker"] == "manager"
    assert line["start_s"] == pytest.approx(2.0, abs=1.0)
    assert "добрый день" in line["text"].lower()
