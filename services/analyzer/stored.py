"""A call's transcription as the task stores it, and back: what re-scoring needs without
the audio (a person swapping the roles of a call)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from services.analyzer.pipeline import SIDES, Transcription
from services.analyzer.roles import BY_PERSON
from services.analyzer.speakers import Voice
from services.analyzer.talk import talk_metrics
from services.analyzer.transcript import SpeakerName, Utterance, Word
from shared.mongo import Document
from shared.results import CallMetrics
from shared.voiceprints import pack, unpack


def transcription_fields(transcription: Transcription, *, keep_voices: bool) -> Document:
    """The task fields of a transcription: the transcript by speaker with word times, each
    side's speech, how the roles were decided, and (if kept) each side's voice (all but
    the roles are stored apart from the call: `shared/call_details.py`)."""
    fields: Document = {
        "transcript": [
            {
                "speaker": line.speaker,
                "start_s": round(line.start_s, 2),
                "end_s": round(line.end_s, 2),
                "text": line.text,
                "words": [[w.text, round(w.start_s, 2), round(w.end_s, 2)] for w in line.words],
            }
            for line in transcription.utterances
        ],
        "speech": {
            side: [[round(start_s, 2), round(end_s, 2)] for start_s, end_s in intervals]
            for side, intervals in transcription.speech.items()
        },
        "roles": transcription.roles.document(),
    }
    if keep_voices:
        fields["voices"] = {
            side: {"embedding": pack(voice.embedding), "speech_s": voice.speech_s}
            for side, voice in transcription.voices.items()
        }
    return fields


def metrics_document(transcription: Transcription) -> CallMetrics:
    """SPEC §7 metrics."""
    metrics = transcription.metrics
    return {
        "duration_s": metrics.duration_s,
        "talk_time_manager_s": metrics.talk_time_manager_s,
        "talk_time_client_s": metrics.talk_time_client_s,
        "talk_ratio": metrics.talk_ratio,
        "longest_monologue_s": metrics.longest_monologue_s,
        "silence_s": metrics.silence_s,
        "interruptions": metrics.interruptions,
        "words_per_minute_manager": metrics.words_per_minute_manager,
    }


def utterances_of(transcript: Sequence[Document]) -> list[Utterance]:
    """A stored transcript's utterances (what re-scoring and re-tagging read)."""
    return [
        Utterance(
            speaker=line["speaker"],
            start_s=line["start_s"],
            end_s=line["end_s"],
            text=line["text"],
            words=tuple(Word(text, start_s, end_s) for text, start_s, end_s in line["words"]),
        )
        for line in transcript
    ]


def _other(side: SpeakerName) -> SpeakerName:
    return "client" if side == "manager" else "manager"


def with_roles_swapped(task: Document) -> Transcription:
    """The task's stored transcription with manager and client exchanged by a person, its
    metrics recomputed from each side's speech."""
    utterances = [
        dataclasses.replace(line, speaker=_other(line.speaker))
        for line in utterances_of(task.get("transcript") or [])
    ]
    stored = task.get("speech") or {}
    speech = {
        side: [(start_s, end_s) for start_s, end_s in stored.get(_other(side), [])]
        for side in SIDES
    }
    voices = {
        _other(side): Voice(unpack(voice["embedding"]), voice["speech_s"])
        for side, voice in (task.get("voices") or {}).items()
    }
    metrics = task["results"]["metrics"]
    return Transcription(
        utterances=utterances,
        metrics=talk_metrics(
            speech["manager"],
            speech["client"],
            duration_s=metrics["duration_s"],
            manager_words=sum(len(u.words) for u in utterances if u.speaker == "manager"),
            interruptions=metrics["interruptions"],
        ),
        parts=[],
        roles=BY_PERSON,
        speech=speech,
        language=task["results"].get("language"),
        voices=voices,
    )
