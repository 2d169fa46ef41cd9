"""Diarization and roles on synthetic embeddings: clusters, smoothing, one voice, decisions."""

from __future__ import annotations

import numpy as np

from services.analyzer.roles import CONFIDENT, RoleHints, decide_roles
from services.analyzer.speakers import (
    HOP_S,
    SpeechEmbeddings,
    Voice,
    Window,
    diarize,
)
from services.analyzer.transcript import Word
from shared.voiceprints import pack, unpack

DIM = 256


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _voices(similarity: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two voice directions `similarity` apart, sharing a common part (the line)."""
    rng = np.random.default_rng(seed)
    common, own_a, own_b = (_unit(rng.standard_normal(DIM)) for _ in range(3))
    weight = np.sqrt(similarity)
    return (
        _unit(weight * common + np.sqrt(1 - similarity) * own_a),
        _unit(weight * common + np.sqrt(1 - similarity) * own_b),
    )


def _speech(
    turns: list[tuple[float, float, int]],
    voices: tuple[np.ndarray, ...],
    *,
    noise: float,
    seed: int,
) -> SpeechEmbeddings:
    """Windows every HOP_S over each stretch, embedded as its voice plus noise; a stretch
    may hold several turns (speaker changes without a pause)."""
    rng = np.random.default_rng(seed)
    stretches: list[tuple[float, float]] = []
    for start_s, end_s, _ in turns:
        if stretches and abs(stretches[-1][1] - start_s) < 1e-9:
            stretches[-1] = (stretches[-1][0], end_s)
        else:
            stretches.append((start_s, end_s))
    windows, rows = [], []
    for index, (start_s, end_s) in enumerate(stretches):
        for first in np.arange(start_s, max(start_s + 1e-6, end_s - 1.6 + 1e-6), HOP_S):
            centre = first + 0.8
            voice = next(v for s, e, v in turns if s <= centre <= e or e > centre)
            windows.append(Window(float(first), float(first) + 1.6, index))
            rows.append(_unit(voices[voice] + noise * rng.standard_normal(DIM) / np.sqrt(DIM)))
    return SpeechEmbeddings(stretches, windows, np.stack(rows))


DIALOGUE = [(1.0, 5.0, 0), (6.0, 9.0, 1), (10.0, 16.0, 0), (17.0, 20.0, 1), (21.0, 26.0, 0)]


def _voice_of(diarization_turns: list, time_s: float) -> int:
    return next(t.voice for t in diarization_turns if t.start_s <= time_s <= t.end_s)


def test_two_voices_are_told_apart_turn_by_turn() -> None:
    speech = _speech(DIALOGUE, _voices(0.8), noise=0.8, seed=1)
    result = diarize(speech)
    assert len(result.voices) == 2
    truth_to_found = {_voice_of(result.turns, 3.0): 0, _voice_of(result.turns, 7.5): 1}
    assert len(truth_to_found) == 2
    for start_s, end_s, voice in DIALOGUE:
        assert truth_to_found[_voice_of(result.turns, (start_s + end_s) / 2)] == voice
    assert result.changes_inside_speech() == 0
    found = {index: voice.speech_s for index, voice in enumerate(result.voices)}
    assert sum(found.values()) == sum(end - start for start, end, _ in DIALOGUE)


def test_a_change_of_voice_without_a_pause_splits_the_stretch() -> None:
    turns = [(1.0, 8.0, 0), (8.0, 14.0, 1), (15.0, 20.0, 0)]
    result = diarize(_speech(turns, _voices(0.7), noise=0.6, seed=2))
    assert len(result.voices) == 2
    assert result.changes_inside_speech() == 1
    (cut,) = [t.start_s for t in result.turns if 1.0 < t.start_s < 14.0]
    assert abs(cut - 8.0) <= HOP_S


def test_one_voice_is_not_split_in_two() -> None:
    voice, _ = _voices(0.8)
    turns = [(start, end, 0) for start, end, _ in DIALOGUE]
    result = diarize(_speech(turns, (voice,), noise=0.5, seed=3))
    assert len(result.voices) == 1
    assert {turn.voice for turn in result.turns} == {0}


def test_too_little_speech_is_one_voice() -> None:
    result = diarize(_speech([(1.0, 3.0, 0), (4.0, 6.0, 1)], _voices(0.5), noise=0.3, seed=4))
    assert len(result.voices) == 1


def _said(*phrases: str) -> list[Word]:
    words, time_s = [], 0.0
    for phrase in phrases:
        for text in phrase.split():
            words.append(Word(text, time_s, time_s + 0.3))
            time_s += 0.4
        time_s += 3.0
    return words


HINTS = RoleHints(
    cue_phrases=("my name is", "calling from"), script_phrases=("flower company", "call you back")
)


def test_the_voiceprint_decides_before_cues() -> None:
    first, second = _voices(0.6)
    voices = [Voice(first, 10.0), Voice(second, 20.0)]
    words = [_said("hello"), _said("my name is Anna calling from the flower company")]
    hints = RoleHints(voiceprint=_unit(first + 0.1 * second), cue_phrases=HINTS.cue_phrases)
    roles = decide_roles(voices, words, hints)
    assert (roles.manager, roles.method) == (0, "voiceprint")
    assert roles.confidence >= 0.9


def test_a_voiceprint_close_to_both_voices_or_to_neither_leaves_it_to_the_cues() -> None:
    first, second = _voices(0.97)
    voices = [Voice(first, 10.0), Voice(second, 20.0)]
    words = [_said("hello"), _said("my name is Anna calling from the flower company")]
    both = RoleHints(voiceprint=_unit(first + second), cue_phrases=HINTS.cue_phrases)
    assert decide_roles(voices, words, both).method == "cues"
    stranger = _voices(0.2, seed=9)[0]
    neither = RoleHints(voiceprint=stranger, cue_phrases=HINTS.cue_phrases)
    roles = decide_roles(voices, words, neither)
    assert (roles.manager, roles.method) == (1, "cues")


def test_cues_outweigh_script_phrases_the_client_says() -> None:
    voices = [Voice(_voices(0.5)[0], 8.0), Voice(_voices(0.5)[1], 12.0)]
    client = _said("hello", "I will call you back", "the flower company is fine")
    manager = _said("my name is Anna", "I am calling from the shop")
    roles = decide_roles(voices, [client, manager], HINTS)
    assert (roles.manager, roles.method) == (1, "cues")
    assert not roles.uncertain


def test_without_cues_the_voice_that_talks_more_is_the_manager_and_unsure() -> None:
    voices = [Voice(_voices(0.5)[0], 8.0), Voice(_voices(0.5)[1], 30.0)]
    roles = decide_roles(voices, [_said("hello"), _said("we deliver flowers")], HINTS)
    assert (roles.manager, roles.method) == (1, "talk_share")
    assert roles.uncertain
    assert roles.confidence < CONFIDENT


def test_a_lone_voice_is_the_manager() -> None:
    roles = decide_roles([Voice(_voices(0.5)[0], 8.0)], [_said("hello there")], HINTS)
    assert roles.manager == 0
    assert roles.uncertain


def test_embeddings_are_stored_compactly_and_exactly() -> None:
    vector = _voices(0.5)[0]
    packed = pack(vector)
    assert len(packed) == DIM * 4
    assert np.array_equal(unpack(packed), vector)
