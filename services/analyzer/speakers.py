"""Who spoke when on a one-channel recording: speaker embeddings over the speech, two
clusters, smoothed over time.

The speech the VAD found is cut into 1.6 s windows (what the encoder was trained on; a
shorter stretch is repeated to fill one), and each window gets a GE2E embedding
(`embed_speech`, per part of a long call). `diarize` then works on the whole call:

1. The embeddings are centred: what every window shares (the line, the codec) is taken
   out, so two voices stand apart even where the model places them close together.
2. Two clusters start from the stretches of speech between pauses, which are mostly one
   speaker's turn: a split along their principal direction and an agglomerative one,
   each refined by k-means; the better separated wins.
3. A Viterbi pass relabels window by window, where changing speaker inside a stretch of
   speech costs more than at a pause; the centroids follow, a few rounds.

Two clusters are two voices only when they stand far apart, as people's voices do, or,
closer together, when the split follows the turns of a conversation; otherwise they are
one voice (a message left on a machine, a client who never answers) split by what it said,
and splitting it would invent a second speaker.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.analyzer.audio import SAMPLE_RATE_HZ, Samples
from services.analyzer.talk import Interval
from services.analyzer.voice_encoder import PARTIAL_FRAMES, PARTIAL_S, VoiceEncoder, mel_frames

HOP_S = 0.8
# Viterbi costs of a change of speaker between two windows, in units of cosine.
SWITCH_INSIDE_SPEECH = 0.35
SWITCH_AT_PAUSE = 0.02
REFINE_ROUNDS = 4
# Two clusters are two voices when their mean voices are no more alike than this and
# either they stand this far apart (Fisher ratio of the windows on the line between their
# centroids) or at least this share of consecutive stretches of speech change voice, as
# turns do. Measured on generated 8 kHz calls (Festival's Russian and English voices and
# espeak-ng's; 3 to 30 stretches): one voice split by what it said gives similarity
# 0.80-0.96, separation 7.5-55 and turns 0.29-0.71; two voices 0.52-0.91, 26-1,400 and
# 0.61-1.0, the lowest of each from espeak-ng's voices, which lie close together. Human
# voices lie much further apart.
ONE_VOICE_SIMILARITY = 0.92
CLEARLY_APART = 60.0
TURN_TAKING = 0.6
# Less speech than this (about 7 s) is too little to tell two voices apart: one voice.
MIN_WINDOWS = 8
# The agglomerative start looks at this many of the longest stretches (it is quadratic).
MAX_LINKAGE_STRETCHES = 150
# Windows embedded at once: small batches stay in cache (measured: 32 is as fast as 256, in
# a sixth of the memory).
BATCH = 32

Vector = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int_]


@dataclass(frozen=True)
class Voice:
    """One speaker of a call: the mean embedding of their speech, and how much there was."""

    embedding: Vector
    speech_s: float


@dataclass(frozen=True)
class Turn:
    """A stretch of speech of one voice (an index into `Diarization.voices`)."""

    start_s: float
    end_s: float
    voice: int


@dataclass(frozen=True)
class Diarization:
    """The turns of a one-channel call and its voices (one or two)."""

    turns: list[Turn]
    voices: tuple[Voice, ...]

    def voice_at(self, time_s: float) -> int:
        """The voice speaking at a time, or the nearest turn's."""
        if not self.turns:
            return 0
        return min(self.turns, key=lambda turn: _distance(turn, time_s)).voice

    def speech(self, voice: int) -> list[Interval]:
        """Where a voice speaks."""
        return [(turn.start_s, turn.end_s) for turn in self.turns if turn.voice == voice]

    def changes_inside_speech(self) -> int:
        """Changes of voice with no pause between the turns: the second voice came in
        while the first was speaking, or with no gap at all."""
        return sum(
            1
            for previous, turn in zip(self.turns, self.turns[1:], strict=False)
            if previous.voice != turn.voice and turn.start_s - previous.end_s < 1e-6
        )


def _distance(turn: Turn, time_s: float) -> float:
    return max(turn.start_s - time_s, time_s - turn.end_s, 0.0)


@dataclass(frozen=True)
class Window:
    """A window of speech, times absolute in the call; `stretch` numbers the stretch of
    speech (between pauses) it belongs to."""

    start_s: float
    end_s: float
    stretch: int

    @property
    def centre_s(self) -> float:
        return (self.start_s + self.end_s) / 2


@dataclass(frozen=True)
class SpeechEmbeddings:
    """The windows of a stream's speech and their embeddings (one row each)."""

    speech: list[Interval]
    windows: list[Window]
    embeddings: Vector

    @staticmethod
    def joined(pieces: list[SpeechEmbeddings]) -> SpeechEmbeddings:
        """The parts of a call as one (their times are already absolute)."""
        speech: list[Interval] = []
        windows: list[Window] = []
        for piece in pieces:
            windows += [Window(w.start_s, w.end_s, w.stretch + len(speech)) for w in piece.windows]
            speech += piece.speech
        rows = [piece.embeddings for piece in pieces if len(piece.embeddings)]
        embeddings = np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)
        return SpeechEmbeddings(speech, windows, embeddings)

    def voice(self) -> Voice | None:
        """All of it as one voice (a channel that one person speaks on)."""
        if not self.windows:
            return None
        return Voice(_normalised(self.embeddings.mean(axis=0)), _total(self.speech))


def _total(speech: list[Interval]) -> float:
    return round(sum(end_s - start_s for start_s, end_s in speech), 2)


def _windows(speech: list[Interval]) -> list[Window]:
    windows: list[Window] = []
    for stretch, (start_s, end_s) in enumerate(speech):
        if end_s - start_s <= PARTIAL_S:
            windows.append(Window(start_s, end_s, stretch))
            continue
        count = int(np.ceil((end_s - start_s - PARTIAL_S) / HOP_S)) + 1
        windows += [
            Window(float(first), float(first) + PARTIAL_S, stretch)
            for first in np.linspace(start_s, end_s - PARTIAL_S, count)
        ]
    return windows


def embed_speech(
    encoder: VoiceEncoder, audio: Samples, speech: list[Interval], *, offset_s: float = 0.0
) -> SpeechEmbeddings:
    """Embeddings of a stream's speech windows; times shifted by `offset_s` (its part's
    start in the call)."""
    windows = _windows(speech)
    length = int(PARTIAL_S * SAMPLE_RATE_HZ)
    batches = []
    for first in range(0, len(windows), BATCH):
        mels = np.stack(
            [
                mel_frames(
                    np.resize(
                        audio[int(w.start_s * SAMPLE_RATE_HZ) : int(w.end_s * SAMPLE_RATE_HZ)],
                        length,
                    )
                )[:PARTIAL_FRAMES]
                for w in windows[first : first + BATCH]
            ]
        )
        batches.append(encoder.embed_mels(mels))
    return SpeechEmbeddings(
        [(start_s + offset_s, end_s + offset_s) for start_s, end_s in speech],
        [Window(w.start_s + offset_s, w.end_s + offset_s, w.stretch) for w in windows],
        np.concatenate(batches) if batches else np.zeros((0, 0), dtype=np.float32),
    )


def _normalised(vectors: Vector) -> Vector:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-8), dtype=np.float32)


def _centroids(points: Vector, labels: Labels) -> Vector:
    return _normalised(np.stack([points[labels == k].mean(axis=0) for k in (0, 1)]))


def _separation(points: Vector, labels: Labels) -> float:
    """Fisher ratio of two clusters projected on the line between their centroids."""
    if labels.min() == labels.max():
        return 0.0
    centroids = _centroids(points, labels)
    projected = points @ (centroids[0] - centroids[1])
    first, second = projected[labels == 0], projected[labels == 1]
    return float((first.mean() - second.mean()) ** 2 / max(first.var() + second.var(), 1e-9))


def _nearest(points: Vector, centroids: Vector) -> Labels:
    return np.asarray(np.argmax(points @ centroids.T, axis=1), dtype=np.int_)


def _two_means(points: Vector, labels: Labels) -> Labels:
    """Spherical k-means with two clusters, from the given labels."""
    for _ in range(20):
        if labels.min() == labels.max():
            break
        updated = _nearest(points, _centroids(points, labels))
        if np.array_equal(updated, labels):
            break
        labels = updated
    return labels


def _principal_split(points: Vector) -> Labels:
    centred = points - points.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    return np.asarray(centred @ direction > 0, dtype=np.int_)


def _average_linkage(points: Vector) -> Labels:
    """Agglomerative clustering down to two clusters by mean cosine between members
    (Lance-Williams updates of the cluster similarities)."""
    count = len(points)
    similarity = (points @ points.T).astype(np.float64)
    np.fill_diagonal(similarity, -np.inf)
    sizes = np.ones(count)
    owner = np.arange(count)
    for _ in range(count - 2):
        first, second = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        merged = (sizes[first] * similarity[first] + sizes[second] * similarity[second]) / (
            sizes[first] + sizes[second]
        )
        similarity[first], similarity[:, first] = merged, merged
        similarity[first, first] = -np.inf
        similarity[second], similarity[:, second] = -np.inf, -np.inf
        sizes[first] += sizes[second]
        owner[owner == second] = first
    return np.asarray(owner != owner[0], dtype=np.int_)


def _linkage_split(points: Vector) -> Labels:
    """Average linkage over the longest stretches, the rest by nearest centroid."""
    if len(points) <= MAX_LINKAGE_STRETCHES:
        return _average_linkage(points)
    longest = points[:MAX_LINKAGE_STRETCHES]
    return _nearest(points, _centroids(longest, _average_linkage(longest)))


def _initial_labels(points: Vector, windows: list[Window]) -> Labels:
    """Labels per window from clustering the stretches of speech (each the mean of its
    windows, centred again among themselves, longest first)."""
    stretches = np.array([w.stretch for w in windows])
    ids, of_window, counts = np.unique(stretches, return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    means = _normalised(np.stack([points[stretches == ids[i]].mean(axis=0) for i in order]))
    means = _normalised(means - means.mean(axis=0))
    if len(means) < 2:
        return np.zeros(len(windows), dtype=int)
    splits: list[Callable[[Vector], Labels]] = [_principal_split, _linkage_split]
    candidates = [_two_means(means, split(means)) for split in splits]
    best = max(candidates, key=lambda labels: _separation(means, labels))
    by_stretch = np.empty(len(ids), dtype=int)
    by_stretch[order] = best
    return by_stretch[of_window]


def _viterbi(scores: Vector, windows: list[Window]) -> Labels:
    """The most likely voice per window given their similarities and the switch costs."""
    total = scores[0].astype(np.float64)
    back = np.zeros((len(windows), 2), dtype=int)
    for index in range(1, len(windows)):
        inside = windows[index].stretch == windows[index - 1].stretch
        switched = total[::-1] - (SWITCH_INSIDE_SPEECH if inside else SWITCH_AT_PAUSE)
        back[index] = np.where(total >= switched, [0, 1], [1, 0])
        total = np.maximum(total, switched) + scores[index]
    labels = np.zeros(len(windows), dtype=int)
    labels[-1] = int(np.argmax(total))
    for index in range(len(windows) - 1, 0, -1):
        labels[index - 1] = back[index, labels[index]]
    return labels


def _turns(speech: list[Interval], windows: list[Window], labels: Labels) -> list[Turn]:
    """Each stretch of speech split where its windows change voice (half-way between)."""
    turns: list[Turn] = []
    by_stretch: dict[int, list[tuple[Window, int]]] = {}
    for window, label in zip(windows, labels.tolist(), strict=True):
        by_stretch.setdefault(window.stretch, []).append((window, label))
    for stretch, (start_s, end_s) in enumerate(speech):
        labelled = by_stretch[stretch]
        cut_s, voice = start_s, labelled[0][1]
        for (previous, _), (window, label) in itertools.pairwise(labelled):
            if label != voice:
                middle_s = (previous.centre_s + window.centre_s) / 2
                turns.append(Turn(cut_s, middle_s, voice))
                cut_s, voice = middle_s, label
        turns.append(Turn(cut_s, end_s, voice))
    return turns


def _two_voices(points: Vector, labels: Labels, windows: list[Window], similarity: float) -> bool:
    """Whether two clusters are two voices, not one voice split by what it said."""
    if similarity > ONE_VOICE_SIMILARITY:
        return False
    return (
        _separation(points, labels) >= CLEARLY_APART or _turn_taking(labels, windows) >= TURN_TAKING
    )


def _turn_taking(labels: Labels, windows: list[Window]) -> float:
    """The share of consecutive stretches of speech (each its windows' majority) that
    change voice."""
    votes: dict[int, list[int]] = {}
    for window, label in zip(windows, labels.tolist(), strict=True):
        votes.setdefault(window.stretch, []).append(label)
    voices = [round(sum(of) / len(of)) for _, of in sorted(votes.items())]
    if len(voices) < 2:
        return 0.0
    return sum(a != b for a, b in itertools.pairwise(voices)) / (len(voices) - 1)


def diarize(speech: SpeechEmbeddings) -> Diarization:
    """Split a one-channel call's speech between (at most) two voices."""
    one_voice = speech.voice()
    if one_voice is None:
        return Diarization([], ())
    single = Diarization([Turn(start, end, 0) for start, end in speech.speech], (one_voice,))
    windows, embeddings = speech.windows, speech.embeddings
    if len(windows) < MIN_WINDOWS:
        return single
    points = _normalised(embeddings - embeddings.mean(axis=0))
    labels = _initial_labels(points, windows)
    for _ in range(REFINE_ROUNDS):
        if labels.min() == labels.max():
            return single
        updated = _viterbi(points @ _centroids(points, labels).T, windows)
        if np.array_equal(updated, labels):
            break
        labels = updated
    if labels.min() == labels.max():
        return single
    voices = _centroids(embeddings, labels)
    if not _two_voices(points, labels, windows, float(voices[0] @ voices[1])):
        return single
    turns = _turns(speech.speech, windows, labels)
    return Diarization(
        turns,
        tuple(
            Voice(voices[k], _total([(t.start_s, t.end_s) for t in turns if t.voice == k]))
            for k in (0, 1)
        ),
    )
