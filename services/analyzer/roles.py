"""Which voice of a one-channel call is the manager: how it was decided, and how sure.

In order, the first that can tell:
1. the manager's voiceprint: the voice closest to it, close enough and clearly closer
   than the other voice;
2. cues in what each voice said: the configured cue phrases (introductions: «меня
   зовут», "calling from") count twice, the phrases the call's scripts expect of the
   manager once; whoever says more of them is the manager;
3. talk share: the voice that talks more (managers usually do), always marked unsure.
Never "the first voice": clients usually answer first («Алло?»).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.analyzer.phrases import find_phrase, tokenize
from services.analyzer.speakers import Vector, Voice
from services.analyzer.transcript import Utterance, Word
from shared.tasks import RoleMethod

# Below this, a call's roles are shown as uncertain and can be filtered for review.
CONFIDENT = 0.6
CUE_WEIGHT = 2
SCRIPT_PHRASE_WEIGHT = 1
# This much cue evidence (in weights) on one side is as sure as cues get.
FULL_CUE_EVIDENCE = 4


@dataclass(frozen=True)
class Roles:
    """`manager` is the index of the manager's voice among the call's voices."""

    manager: int
    method: RoleMethod
    confidence: float

    @property
    def uncertain(self) -> bool:
        return self.confidence < CONFIDENT

    def document(self) -> dict[str, object]:
        return {
            "method": self.method,
            "confidence": round(self.confidence, 2),
            "uncertain": self.uncertain,
        }


@dataclass(frozen=True)
class RoleHints:
    """What the decision may use besides the audio, fetched before the analysis."""

    voiceprint: Vector | None = None
    cue_phrases: tuple[str, ...] = ()
    script_phrases: tuple[str, ...] = ()
    min_similarity: float = 0.9
    min_margin: float = 0.05


STEREO = Roles(manager=0, method="channels", confidence=1.0)
BY_PERSON = Roles(manager=0, method="person", confidence=1.0)


def _by_voiceprint(voices: Sequence[Voice], hints: RoleHints) -> Roles | None:
    if hints.voiceprint is None:
        return None
    similarity = [float(np.dot(hints.voiceprint, voice.embedding)) for voice in voices]
    best = int(np.argmax(similarity))
    if similarity[best] < hints.min_similarity:
        return None
    margin = similarity[best] - max(
        (s for index, s in enumerate(similarity) if index != best), default=hints.min_similarity
    )
    if len(voices) > 1 and margin < hints.min_margin:
        return None  # both sound like the manager: the voiceprint cannot tell
    # A voiceprint is surer than any cue: 0.9 at the minimum margin, more above it.
    confidence = min(0.99, 0.9 + max(0.0, margin - hints.min_margin))
    return Roles(manager=best, method="voiceprint", confidence=confidence)


def _cue_scores(words: Sequence[Sequence[Word]], hints: RoleHints) -> list[int]:
    scores = []
    for said in words:
        if not said:
            scores.append(0)
            continue
        tokens = tokenize([Utterance("manager", said[0].start_s, said[-1].end_s, "", tuple(said))])
        scores.append(
            sum(CUE_WEIGHT for p in hints.cue_phrases if find_phrase(p, tokens))
            + sum(SCRIPT_PHRASE_WEIGHT for p in hints.script_phrases if find_phrase(p, tokens))
        )
    return scores


def _by_cues(words: Sequence[Sequence[Word]], hints: RoleHints) -> Roles | None:
    scores = [*_cue_scores(words, hints), 0][:2]  # a lone voice is measured against none
    first, second = scores
    if first == second:
        return None
    lead = abs(first - second) / (first + second)
    confidence = 0.5 + 0.35 * lead * min(1.0, max(first, second) / FULL_CUE_EVIDENCE)
    return Roles(manager=0 if first > second else 1, method="cues", confidence=confidence)


def _by_talk_share(voices: Sequence[Voice]) -> Roles:
    if len(voices) < 2:
        # A lone voice on the manager's line is most often the manager (a message left).
        return Roles(manager=0, method="talk_share", confidence=0.5)
    first, second = (voice.speech_s for voice in voices)
    share = first / (first + second) if first + second else 0.5
    return Roles(
        manager=0 if first >= second else 1,
        method="talk_share",
        confidence=min(CONFIDENT - 0.01, 0.5 + 0.1 * abs(2 * share - 1)),
    )


def decide_roles(
    voices: Sequence[Voice], words: Sequence[Sequence[Word]], hints: RoleHints
) -> Roles:
    """Which of (one or two) voices is the manager; `words[i]` is what voice i said."""
    return _by_voiceprint(voices, hints) or _by_cues(words, hints) or _by_talk_share(voices)
