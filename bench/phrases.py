"""Hearing the script's words on telephone audio, in Russian and in English: part of
`make bench-analyze`.

A generated set of calls per language over the codecs CRMs send (8 kHz G.711 μ-law and
A-law, GSM, 32 kbit/s MP3, Opus; stereo and mono mixes; pink noise at 20 dB SNR in two
calls of three; echo between the channels at −24 dB in some). In half of the calls the
manager says each of the script's eight phrases between lines of unrelated talk; in the
other half the manager says near misses instead (the same ideas in other words) and the
script's forbidden phrase. Four calls of each set run five minutes, the phrases far apart.

Russian is spoken by Festival's Russian voice and its twins with pitch and formants
shifted (a different pair in every call); English by Festival's English voices (a woman's
and a man's, shifted too) and, as before, espeak-ng's.

Each model and decoding variant transcribes the whole set in the same run, the variants
taking turns call by call; printed per variant: the word error rate against the spoken
text, phrase recall (spoken phrases the matcher finds, said by the manager), false hits
(phrases found in calls where they were not said), stage verdicts right (a stage per
phrase, and "must not be said" for the forbidden one) and the analysis's CPU seconds.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.calls import generated
from devtools.samples import Line, Speaker, Voices, one_after_another, word_error_rate
from services.analyzer import evaluate
from services.analyzer.asr import Decoding, WhisperTranscriber
from services.analyzer.phrases import find_phrase, tokenize
from services.analyzer.pipeline import Listening, transcribe_call
from services.analyzer.roles import RoleHints
from services.analyzer.voice_encoder import VoiceEncoder
from shared.results import LanguageCode, TemplateRef
from shared.scripts import Template
from shared.settings import Settings


@dataclass(frozen=True)
class Corpus:
    """What a language's calls say, and who says it."""

    language: LanguageCode
    script: dict[str, str]  # phrase → the manager's line that says it
    near_misses: list[str]  # the same ideas in other words, in the script's order
    forbidden: tuple[str, str]  # the phrase that must not be said, and a line saying it
    manager_talk: list[str]
    client_talk: list[str]
    answer: str  # the client's first words
    voices: list[Voices]


RUSSIAN = Corpus(
    language="ru",
    script={
        "компания ромашка": "Добрый день, меня зовут Анна, я звоню из компании Ромашка.",
        "удобно говорить": "Вам сейчас удобно говорить?",
        "какой у вас бюджет": "Подскажите, какой у вас бюджет на цветы для офиса?",
        "назначим встречу": "Давайте назначим встречу на следующей неделе.",
        "кто принимает решение": "Скажите, кто у вас принимает решение?",
        "отправлю коммерческое предложение": "Я отправлю вам коммерческое предложение сегодня.",
        "перезвоню в четверг": "Я перезвоню вам в четверг утром.",
        "остались вопросы": "Остались ли у вас ещё вопросы?",
    },
    near_misses=[
        "Добрый день, это Анна, я по поводу цветов для офиса.",
        "Я вас сейчас не отвлекаю?",
        "Сколько вы планируете потратить на офис?",
        "Можем увидеться где-нибудь на следующей неделе.",
        "А с кем ещё нужно это обсудить?",
        "Я пришлю вам наши цены по почте сегодня.",
        "Я наберу вас ещё раз в четверг утром.",
        "Что-нибудь ещё хотите узнать?",
    ],
    forbidden=("это не моя проблема", "Это не моя проблема, разбирайтесь сами."),
    manager_talk=[
        "Мы доставляем свежие розы и тюльпаны в офисы по всему городу.",
        "Наши флористы собирают каждый букет рано утром.",
        "Многие клиенты заказывают цветы для ресепшена.",
        "Доставка бесплатная при заказе от десяти тысяч рублей.",
        "Мы также ухаживаем за растениями в горшках.",
        "Сезонные цветы стоят дольше и обходятся дешевле.",
        "Наши курьеры приезжают до девяти утра.",
        "Заказ можно изменить в любой момент по телефону.",
        "В прошлом году мы работали с тремя банками и двумя гостиницами.",
        "Можем добавить открытку с логотипом вашей фирмы.",
    ],
    client_talk=[
        "Да, я вас слушаю.",
        "У нас ресепшен на первом этаже.",
        "Сейчас мы покупаем цветы в небольшом магазине рядом.",
        "Наш директор любит белые розы.",
        "Офис работает с девяти до шести.",
        "Раньше у нас были проблемы с вялыми цветами.",
        "Звучит интересно.",
        "Сколько времени занимает доставка?",
        "Нас здесь около сорока человек.",
        "Вы доставляете по выходным?",
    ],
    answer="Алло, слушаю.",
    # Festival's Russian voice and its twins: a lower and a higher one, never the same pair.
    voices=[
        Voices(f"festival:ru@{low}", f"festival:ru@{high}")
        if index % 2 == 0
        else Voices(f"festival:ru@{high}", f"festival:ru@{low}")
        for index, (low, high) in enumerate(
            zip(
                (0.9, 0.94, 0.97, 1.0, 1.03, 1.06, 0.92, 0.99),
                (1.18, 1.3, 1.22, 1.26, 1.2, 1.32, 1.24, 1.28),
                strict=True,
            )
        )
    ],
)
ENGLISH = Corpus(
    language="en",
    script={
        "flower company": "Good afternoon, my name is Anna from the flower company.",
        "convenient to talk": "Is it convenient to talk for a minute?",
        "what budget do you have": "What budget do you have for the office?",
        "schedule a meeting": "Let us schedule a meeting for next week.",
        "makes the decision": "Who makes the decision in your team?",
        "send you the offer": "I will send you the offer by email today.",
        "call you back": "I will call you back on Thursday morning.",
        "any other questions": "Do you have any other questions for me?",
    },
    near_misses=[
        "Good afternoon, my name is Anna, I work with flowers.",
        "Is now a good moment for you?",
        "How much are you planning to spend on the office?",
        "We could meet sometime next week if you like.",
        "Who else is involved on your side?",
        "I will email you our prices today.",
        "I will phone again on Thursday morning.",
        "Is there anything else you want to know?",
    ],
    forbidden=("not my problem", "That is not my problem, sort it out yourself."),
    manager_talk=[
        "We deliver fresh roses and tulips to offices across the city.",
        "Our florists prepare every bouquet early in the morning.",
        "Many of our clients order flowers for their reception desk.",
        "The delivery is free for orders above ten thousand.",
        "We also take care of plants in pots and change the water.",
        "Seasonal flowers last longer and cost a little less.",
        "Our drivers arrive before nine so the office looks fresh.",
        "You can change the order at any time by phone or email.",
        "Last year we worked with three banks and two hotels.",
        "We can add a small card with your company logo.",
    ],
    client_talk=[
        "Yes, I am listening.",
        "We have a reception on the ground floor.",
        "Right now we buy flowers from a small shop nearby.",
        "Our director likes white roses.",
        "The office is open from nine to six.",
        "We had problems with wilted flowers before.",
        "That sounds interesting.",
        "How long does the delivery take?",
        "We are about forty people here.",
        "Do you deliver on weekends?",
    ],
    answer="Hello?",
    # Festival's English voices (people's recordings) and espeak-ng's, in pairs.
    voices=[
        Voices("festival:slt", "festival:kal"),
        Voices("festival:kal@0.95", "festival:slt@1.05"),
        Voices("festival:ked", "festival:slt@0.97"),
        Voices("festival:slt@1.04", "festival:ked@0.96"),
        Voices("en-us+m3", "en-gb+f2"),
        Voices("en-gb+m5", "en-us+f1"),
        Voices("festival:kal@1.05", "en-us+f3"),
        Voices("en-gb-scotland+m2", "festival:slt"),
    ],
)

# (encoding, container, stereo, echo between the channels in dB)
CODECS = [
    ("ulaw", "wav", True, None),
    ("alaw", "wav", False, None),
    ("gsm", "wav", False, None),
    ("mp3-32k", "mp3", True, None),
    ("opus", "ogg", False, None),
    ("ulaw", "wav", True, -24.0),
]


@dataclass(frozen=True)
class Call:
    """One generated call of a set."""

    index: int
    with_phrases: bool
    voices: Voices
    encoding: str
    container: str
    stereo: bool
    noise_snr_db: float | None
    leak_db: float | None
    talk_between: int  # lines of unrelated talk between two script lines, each side

    @property
    def long(self) -> bool:
        return self.talk_between > 1


def telephone_set(corpus: Corpus, size: int = 24) -> list[Call]:
    """`size` calls of about 2 minutes, then 4 of about 5 minutes."""
    calls = []
    for index in range(size + 4):
        encoding, container, stereo, leak_db = CODECS[index % len(CODECS)]
        calls.append(
            Call(
                index=index,
                with_phrases=index % 2 == 0 if index >= size else index < size // 2,
                voices=corpus.voices[index % len(corpus.voices)],
                encoding=encoding,
                container=container,
                stereo=stereo,
                noise_snr_db=None if index % 3 == 0 else 20.0,
                leak_db=leak_db,
                talk_between=5 if index >= size else 1,
            )
        )
    return calls


def layout(corpus: Corpus, call: Call) -> tuple[list[Line], float]:
    """The call's lines one after another, a short pause between, and its length."""
    rng = random.Random(call.index)
    manager_talk, client_talk = corpus.manager_talk[:], corpus.client_talk[:]
    rng.shuffle(manager_talk)
    rng.shuffle(client_talk)
    said: list[tuple[Speaker, str]] = [("client", corpus.answer)]
    talk = 0
    manager_lines = (
        list(corpus.script.values())
        if call.with_phrases
        else [*corpus.near_misses[:4], corpus.forbidden[1], *corpus.near_misses[4:]]
    )
    for script_line in manager_lines:
        said += [("manager", script_line), ("client", client_talk[talk % len(client_talk)])]
        for _ in range(call.talk_between):
            talk += 1
            said += [
                ("manager", manager_talk[talk % len(manager_talk)]),
                ("client", client_talk[talk % len(client_talk)]),
            ]
    return one_after_another(said, call.voices, pause_s=lambda: rng.uniform(0.4, 1.0))


def template(corpus: Corpus) -> Template:
    """A stage per script phrase (the manager says it), and one the manager must not say."""
    stages = [
        {
            "name": phrase,
            "threshold": 100,
            "points": [{"text": phrase, "weight": 100, "speaker": "manager", "phrases": [phrase]}],
        }
        for phrase in corpus.script
    ]
    forbidden = corpus.forbidden[0]
    stages.append(
        {
            "name": "forbidden",
            "threshold": 100,
            "points": [
                {
                    "text": forbidden,
                    "weight": 100,
                    "speaker": "manager",
                    "forbidden": True,
                    "phrases": [forbidden],
                }
            ],
        }
    )
    return Template.model_validate({"name": f"bench {corpus.language}", "stages": stages})


# What each language's set is heard with: (model, decoding); "defaults" is what
# `shared/settings.py` ships.
VARIANTS: dict[str, tuple[str, Decoding]] = {
    "base, defaults": ("base", Decoding()),
    "base, greedy": ("base", Decoding(beam_size=1)),
    "base, bias": ("base", Decoding(bias=True)),
    "base, fallback": ("base", Decoding(temperature_fallback=True)),
    "base, condition": ("base", Decoding(condition_on_previous_text=True)),
}
ENGLISH_ONLY = {"tiny.en, defaults": ("tiny.en", Decoding())}


@dataclass
class _Tally:
    listening: Listening
    cpu_s: float = 0.0  # of the whole analysis (the channels are recognised at once)
    errors: int = 0
    words: int = 0
    found: int = 0
    found_exactly: int = 0  # word by word, without the whole-phrase tolerance
    said: int = 0
    found_long: int = 0
    said_long: int = 0
    false_hits: int = 0
    not_said: int = 0
    verdicts_right: int = 0
    verdicts: int = 0
    wrong: list[str] = field(default_factory=list)
    by_codec: dict[str, tuple[int, int]] = field(default_factory=dict)  # errors, words


def bench_phrases(encoder: VoiceEncoder, corpus: Corpus, *, quick: bool = False) -> None:
    """Print WER, recall, false hits, stage verdicts and ASR time per variant over the
    language's telephone set; `quick` runs the defaults only."""
    calls = telephone_set(corpus)
    script = template(corpus)
    ref: TemplateRef = {"id": "bench", "name": script.name, "version": 1}
    cues = Settings().role_cues
    phrases = tuple(corpus.script)
    variants = {**VARIANTS, **(ENGLISH_ONLY if corpus.language == "en" else {})}
    if quick:
        variants = {name: variant for name, variant in variants.items() if "defaults" in name}
    tallies = {}
    for name, (model, decoding) in variants.items():
        transcriber = WhisperTranscriber(
            model, device="cpu", compute_type="int8", decoding=decoding
        )
        hints = RoleHints(cue_phrases=cues, script_phrases=phrases)
        listening = Listening(
            transcriber, encoder, hints, vocabulary=phrases + cues, language=corpus.language
        )
        tallies[name] = _Tally(listening)
    for call in calls:
        lines, duration_s = layout(corpus, call)
        source = _source(call, lines, duration_s)
        for tally in tallies.values():
            started = time.process_time()
            with tempfile.TemporaryDirectory() as temp:
                result = transcribe_call(
                    source,
                    channels=2 if call.stereo else 1,
                    duration_s=duration_s,
                    listening=tally.listening,
                    work_dir=Path(temp),
                )
            tally.cpu_s += time.process_time() - started
            errors, words = word_error_rate(
                [text for _, _, text in lines], [line.text for line in result.utterances]
            )
            tally.errors, tally.words = tally.errors + errors, tally.words + words
            codec = f"{call.encoding}{'' if call.stereo else ' mono'}"
            before = tally.by_codec.get(codec, (0, 0))
            tally.by_codec[codec] = (before[0] + errors, before[1] + words)
            tokens = tokenize(result.utterances)
            hits = sum(find_phrase(p, tokens, speaker="manager") is not None for p in phrases)
            exact = sum(
                find_phrase(p, tokens, speaker="manager", whole=False) is not None for p in phrases
            )
            if call.with_phrases:
                tally.found, tally.said = tally.found + hits, tally.said + len(phrases)
                tally.found_exactly += exact
                if call.long:
                    tally.found_long += hits
                    tally.said_long += len(phrases)
            else:
                tally.false_hits += hits
                tally.not_said += len(phrases)
            for stage in evaluate.checklist("bench", ref, script, result)["stages"]:
                right = stage["passed"] == call.with_phrases
                tally.verdicts_right += right
                tally.verdicts += 1
                if not right:
                    tally.wrong.append(f"call {call.index}: {stage['name']}")
    _report(corpus, calls, tallies)


def _report(corpus: Corpus, calls: list[Call], tallies: dict[str, _Tally]) -> None:
    print(
        f"\n{corpus.language}: the script's phrases on {len(calls)} telephone-band calls "
        f"({sum(c.with_phrases for c in calls)} say them, the others say near misses and "
        f"the forbidden phrase; {sum(c.long for c in calls)} run 5 minutes; "
        f"{sum(not c.stereo for c in calls)} mono)"
    )
    print(
        f"{'model, decoding':22} {'WER':>6} {'recall':>7} {'exact':>6} {'long':>6} "
        f"{'false':>6} {'verdicts':>9} {'CPU s':>7} {'vs first':>8}"
    )
    first_s = next(iter(tallies.values())).cpu_s
    for name, tally in tallies.items():
        print(
            f"{name:22} {tally.errors / tally.words:6.1%} {tally.found / tally.said:7.1%} "
            f"{tally.found_exactly / tally.said:6.1%} "
            f"{tally.found_long / tally.said_long:6.0%} "
            f"{tally.false_hits / tally.not_said:6.1%} "
            f"{tally.verdicts_right:4}/{tally.verdicts:<4} {tally.cpu_s:7.1f} "
            f"{tally.cpu_s / first_s - 1:+8.0%}"
        )
    first = next(iter(tallies))
    print(
        f"WER by codec, {first}: "
        + ", ".join(
            f"{codec} {errors / words:.1%}"
            for codec, (errors, words) in tallies[first].by_codec.items()
        )
    )
    for name, tally in tallies.items():
        if tally.wrong:
            print(f"  wrong verdicts, {name}: {', '.join(tally.wrong)}")
    print(
        "exact: found word by word, without the matcher's whole-phrase tolerance\n"
        "targets: WER ≤ 12 % (Russian), recall ≥ 95 %, false hits ≤ 1 %, every verdict right"
    )


def _source(call: Call, lines: list[Line], duration_s: float) -> Path:
    path, _ = generated(
        f"phrases-{call.index}",
        lines,
        container=call.container,
        duration_s=duration_s,
        stereo=call.stereo,
        sample_rate_hz=8000,
        voices=call.voices,
        encoding=call.encoding,
        noise_snr_db=call.noise_snr_db,
        leak_db=call.leak_db,
    )
    return path
