"""Transcripts written by hand for the tests that score text without ASR."""

from __future__ import annotations

from typing import Any

from services.analyzer.phrases import Token, tokenize
from services.analyzer.transcript import SpeakerName, Utterance, Word


def said(*lines: tuple[SpeakerName, float, str]) -> list[Token]:
    """Utterances with one word every 0.4 s from the given start."""
    utterances = []
    for speaker, start_s, text in lines:
        words = tuple(
            Word(word, start_s + 0.4 * i, start_s + 0.4 * i + 0.3)
            for i, word in enumerate(text.split())
        )
        utterances.append(Utterance(speaker, words[0].start_s, words[-1].end_s, text, words))
    return tokenize(utterances)


def stored_line(speaker: str, start_s: float, text: str) -> dict[str, Any]:
    """An utterance as a call's stored transcript holds it, one word every 0.5 s."""
    words = [
        [word, start_s + 0.5 * i, start_s + 0.5 * i + 0.4] for i, word in enumerate(text.split())
    ]
    return {
        "speaker": speaker,
        "start_s": start_s,
        "end_s": words[-1][2],
        "text": text,
        "words": words,
    }
