"""The language a call is recognised in: «Язык звонков» of the Connection page, or each
stream's own, identified on its first speech; and what the call reports of it."""

from __future__ import annotations

from dataclasses import dataclass

from services.analyzer.asr import Identified
from services.analyzer.talk import Interval
from shared.results import LANGUAGES, CallLanguage, LanguageCode, LanguageSetting

# A stream is said to sound like another language only when the model is at least this sure.
MISMATCH_MIN_PROBABILITY = 0.5


@dataclass(frozen=True)
class StreamLanguage:
    """The language a stream is recognised in, decided on its first speech, and what the
    model identified there."""

    used: LanguageCode
    identified: Identified | None = None

    @property
    def mismatch(self) -> bool:
        """The stream sounded more like another language than the one it was recognised
        in (only where the language was set, not identified)."""
        identified = self.identified
        return (
            identified is not None
            and identified.language != self.used
            and identified.probability >= MISMATCH_MIN_PROBABILITY
        )


def asked_language(setting: LanguageSetting, identified: Identified | None) -> LanguageCode | None:
    """What a stream is recognised in: the set language, or the identified one (None: the
    back end identifies it while transcribing)."""
    if setting != "auto":
        return setting
    return identified.language if identified else None


def call_language(
    languages: dict[str, StreamLanguage],
    speech: dict[str, list[Interval]],
    setting: LanguageSetting,
) -> CallLanguage:
    """The call's language: that of the stream that sounded like another language, if
    one did, else of the stream with the most speech."""
    talk = {stream: sum(end - start for start, end in speech[stream]) for stream in languages}
    telling = sorted(languages, key=lambda stream: (languages[stream].mismatch, talk[stream]))
    if not telling:
        code = setting if setting != "auto" else LANGUAGES[0]
        return {
            "code": code,
            "setting": setting,
            "detected": None,
            "probability": None,
            "mismatch": False,
        }
    language = languages[telling[-1]]
    identified = language.identified
    return {
        "code": language.used,
        "setting": setting,
        "detected": identified.language if identified else None,
        "probability": identified.probability if identified else None,
        "mismatch": language.mismatch,
    }
