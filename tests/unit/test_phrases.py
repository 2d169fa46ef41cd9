"""Russian phrase matching on text (no ASR): word forms, slips, forbidden, speaker and window."""

from __future__ import annotations

import pytest

from services.analyzer.evaluate import stage_result
from services.analyzer.phrases import find_phrase
from services.analyzer.scoring import ROLES_UNCERTAIN, evaluate_phrases, ignored_as_short
from shared.results import checklist_score
from shared.scripts import Stage
from tests.transcripts import said

CALL = said(
    ("manager", 1.0, "Добрый день, меня зовут Анна, компания Ромашка."),
    ("client", 4.0, "Здравствуйте."),
    ("manager", 5.5, "Вам сейчас удобно говорить?"),
    ("client", 8.0, "Да, удобно. Бюджет у нас пятьсот тысяч."),
    ("manager", 40.0, "Перезвоню вам в четверг."),
)


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        ("компания ромашка", "компания Ромашка."),
        ("меня зовут", "меня зовут"),
        ("удобно говорить", "удобно говорить?"),  # one word between: "сейчас"
        ("бюджет", "Бюджет"),
    ],
)
def test_phrases_are_found_with_their_quote(phrase: str, text: str) -> None:
    quote = find_phrase(phrase, CALL)
    assert quote is not None
    assert quote.text.endswith(text.split()[-1])


def test_word_forms_match() -> None:
    tokens = said(("manager", 0.0, "звоню из компании Ромашки по поводу бюджетов"))
    quote = find_phrase("компания ромашка", tokens, speaker="manager")
    assert quote is not None
    assert quote.text == "компании Ромашки"
    assert find_phrase("бюджет", tokens) is not None


def test_a_one_letter_asr_slip_matches_but_short_words_must_be_exact() -> None:
    tokens = said(("manager", 0.0, "я из кампании ромашка"))
    assert find_phrase("компания ромашка", tokens) is not None
    assert find_phrase("на", said(("manager", 0.0, "не"))) is None


def test_speaker_and_window() -> None:
    assert find_phrase("удобно", CALL, speaker="manager").speaker == "manager"  # type: ignore[union-attr]
    assert find_phrase("бюджет", CALL, speaker="manager") is None
    assert find_phrase("перезвоню", CALL, within_s=30) is None
    assert find_phrase("компания ромашка", CALL, within_s=30).start_s == pytest.approx(3.0)  # type: ignore[union-attr]


def test_phrase_words_must_be_close_and_of_one_speaker() -> None:
    tokens = said(("manager", 0.0, "меня"), ("client", 0.5, "зовут"))
    assert find_phrase("меня зовут", tokens) is None
    far = said(("manager", 0.0, "меня"), ("manager", 10.0, "зовут"))
    assert find_phrase("меня зовут", far) is None


GREETING = Stage.model_validate(
    {
        "name": "Приветствие",
        "threshold": 60,
        "points": [
            {
                "text": "Назвал компанию",
                "weight": 50,
                "speaker": "manager",
                "within_s": 30,
                "phrases": ["компания ромашка", "меня зовут"],
            },
            {"text": "Удобно ли говорить", "weight": 30, "phrases": ["удобно говорить"]},
            {
                "text": "Не грубил",
                "weight": 20,
                "phrases": ["отстаньте", "не ваше дело"],
                "forbidden": True,
            },
        ],
    }
)


def test_stage_completion_evidence_and_score() -> None:
    verdict = evaluate_phrases(GREETING, CALL, duration_s=60)
    assert verdict.applicable
    assert verdict.completion == 100
    assert verdict.passed
    assert [q.speaker for q in verdict.evidence] == ["manager", "manager"]
    assert verdict.recommendation is None


def test_forbidden_phrase_costs_its_weight_and_is_quoted() -> None:
    rude = [*CALL, *said(("manager", 50.0, "Это не ваше дело"))]
    verdict = evaluate_phrases(GREETING, rude, duration_s=60)
    assert verdict.completion == 80
    assert verdict.evidence[-1].text == "не ваше дело"
    assert verdict.recommendation == "Нарушено: Не грубил"


def test_missing_points_fail_the_stage_with_a_recommendation() -> None:
    verdict = evaluate_phrases(GREETING, said(("manager", 0.0, "Алло")), duration_s=60)
    assert verdict.completion == 20
    assert not verdict.passed
    assert (
        verdict.recommendation == "Не выполнено: Назвал компанию; Не выполнено: Удобно ли говорить"
    )


def test_what_the_client_said_does_not_count_for_the_manager() -> None:
    client = said(("client", 1.0, "компания Ромашка, удобно говорить?"))
    verdict = evaluate_phrases(GREETING, client, duration_s=60)
    assert verdict.completion == 20  # only "did not say a rude word" holds
    assert verdict.notes == []


def test_uncertain_roles_are_noted_on_stages_that_depend_on_the_speaker() -> None:
    verdict = evaluate_phrases(GREETING, CALL, duration_s=60, roles_uncertain=True)
    assert verdict.completion == 100
    assert verdict.notes == [ROLES_UNCERTAIN]


@pytest.mark.parametrize(
    ("rule", "duration_s", "ignored"),
    [
        ("Звонок короче 1 минуты", 59, True),
        ("звонок короче 1 минуты", 61, False),
        ("менее 30 секунд", 29, True),
        ("меньше минуты", 30, True),
        ("Повторный звонок", 5, False),
        ("", 5, False),
    ],
)
def test_short_call_ignore_rule(rule: str, duration_s: float, ignored: bool) -> None:
    assert ignored_as_short(rule, duration_s) is ignored


def test_score_counts_applicable_evaluated_stages() -> None:
    done = evaluate_phrases(GREETING, CALL, duration_s=60)
    failed = evaluate_phrases(GREETING, [], duration_s=60)
    short = evaluate_phrases(
        GREETING.model_copy(update={"ignore_when": "короче 1 минуты"}),
        CALL,
        duration_s=10,
    )
    result = checklist_score(
        [stage_result(verdict, "phrases") for verdict in (done, failed, short)]
    )
    assert (result["passed"], result["applicable"], result["percent"]) == (1, 2, 50.0)
    assert result["text"] == "1/2"


def test_a_longer_phrase_is_found_as_a_whole_through_telephone_slips() -> None:
    heard = said(("manager", 0.0, "I will call you Mac on Thursday"))
    quote = find_phrase("call you back", heard, speaker="manager")
    assert quote is not None
    assert quote.text.startswith("call you")
    assert find_phrase("call you back", heard, whole=False) is None
    assert (
        find_phrase("makes the decision", said(("manager", 0.0, "who makes none decision")))
        is not None
    )


def test_near_misses_and_flipped_negations_are_not_the_phrase() -> None:
    assert (
        find_phrase("send you the offer", said(("manager", 0.0, "how much to spend on the office")))
        is None
    )
    assert find_phrase("не могу сказать", said(("manager", 0.0, "я могу сказать точно"))) is None
    assert find_phrase("не могу сказать", said(("manager", 0.0, "я не могу сказать"))) is not None
    # Short phrases are never matched loosely.
    assert find_phrase("бюджет", said(("manager", 0.0, "бюро"))) is None


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        ("давайте договоримся о встрече", "давайте договариваемся о встрече"),
        ("назначим встречу", "назначаем встречу на четверг"),
        ("я перезваниваю", "я перезвоню вам"),
        ("отправлю предложение", "отправляю предложение сегодня"),
        ("уточню детали", "уточняю детали"),
        ("обсудим условия", "обсуждаем условия"),
    ],
)
def test_either_verb_of_an_aspect_pair_matches(phrase: str, text: str) -> None:
    assert find_phrase(phrase, said(("manager", 0.0, text))) is not None


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        ("купим", "купаемся"),  # not a pair, though one letter apart
        ("договоримся", "договор подписан"),  # the noun of the same root
        ("представлю компанию", "представляться не стал"),
    ],
)
def test_verbs_that_only_look_alike_do_not_match(phrase: str, text: str) -> None:
    assert find_phrase(phrase, said(("manager", 0.0, text))) is None


@pytest.mark.parametrize(
    ("phrase", "text", "quoted"),
    [
        ("пять минут", "перезвоню через 5 минут", "5 минут"),
        ("бюджет триста пятьдесят тысяч", "наш бюджет 350 000 рублей", "бюджет 350 000"),
        ("бюджет 350 тысяч", "бюджет триста пятьдесят тысяч", "бюджет триста пятьдесят тысяч"),
        ("скидка десять процентов", "дадим скидку 10%", "скидку 10%"),
        ("двадцать первого марта", "встреча 21 марта", "21 марта"),
        ("two weeks", "call me in 2 weeks", "2 weeks"),
    ],
)
def test_numbers_match_however_they_are_written(phrase: str, text: str, quoted: str) -> None:
    quote = find_phrase(phrase, said(("manager", 0.0, text)))
    assert quote is not None
    assert quote.text == quoted


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        ("бюджет 350 тысяч", "бюджет 300 тысяч"),
        ("бюджет триста пятьдесят тысяч", "бюджет 350 рублей"),
        ("скидка десять процентов", "скидка 15%"),
        ("пять минут", "пятнадцать минут"),
    ],
)
def test_another_number_is_never_a_slip(phrase: str, text: str) -> None:
    assert find_phrase(phrase, said(("manager", 0.0, text))) is None


def test_russian_particles_and_pronouns_inside_a_phrase_do_not_count_as_extra_words() -> None:
    asked = said(("manager", 0.0, "Остались ли у вас ещё вопросы?"))
    assert find_phrase("остались вопросы", asked) is not None
    # Words that say something still count: three of them are too many.
    later = said(("manager", 0.0, "Удобно ли вам будет завтра днём говорить?"))
    assert find_phrase("удобно говорить", later, whole=False) is None
