"""The merged timeline of a call: utterances of speakers, with word timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SpeakerName = Literal["manager", "client"]


@dataclass(frozen=True)
class Word:
    """A recognised word; times are absolute seconds from the start of the call."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Utterance:
    """What one speaker said without a long pause."""

    speaker: SpeakerName
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...]
