"""Sample inputs for tests, benchmarks and demos: a CRM submission, a generated recording."""

from __future__ import annotations

import functools
import subprocess
import tempfile
import uuid
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rapidfuzz.distance import Levenshtein

from shared.results import OverallScore, Results, StageResult
from shared.words import WORD, is_number, numbers_read


def sample_call(**changes: Any) -> dict[str, Any]:
    """A valid JSON submission with a fresh call_id; a change to None removes the field."""
    call: dict[str, Any] = {
        "call_id": f"call_{uuid.uuid4().hex[:12]}",
        "audio_url": "https://crm.example/files/audio/call_12345.mp3",
        "duration": 900,
        "manager_id": "mgr_001",
        "manager_name": "Иванов Иван Петрович",
        "deal_id": "deal_5678",
        "deal_stage_id": "stage_qualification",
        "stage_id": "funnel_primary_calls",
    }
    call.update(changes)
    return {name: value for name, value in call.items() if value is not None}


# How ffmpeg encodes a generated call, by name: what CRMs and PBXs really send.
ENCODINGS: dict[str, list[str]] = {
    "mp3": [],
    "mp3-32k": ["-c:a", "libmp3lame", "-b:a", "32k"],
    "mp3-16k": ["-c:a", "libmp3lame", "-b:a", "16k"],
    "mp3-vbr": ["-c:a", "libmp3lame", "-q:a", "5"],  # with a Xing header holding the length
    "ulaw": ["-c:a", "pcm_mulaw"],
    "alaw": ["-c:a", "pcm_alaw"],
    "gsm": ["-c:a", "gsm_ms"],  # GSM 06.10 in WAV: mono, 8 kHz only
    "opus": ["-c:a", "libopus", "-b:a", "24k"],
}


def write_tone(
    path: Path,
    *,
    sample_rate_hz: int,
    channels: int,
    duration_s: float,
    encoding: str | None = None,
) -> Path:
    """Write a 440 Hz tone with ffmpeg; `encoding` names an entry of ENCODINGS, else the
    extension picks the codec."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate={sample_rate_hz}:duration={duration_s}",
            "-ac",
            str(channels),
            *(ENCODINGS[encoding] if encoding else []),
            str(path),
        ],
        check=True,
    )
    return path


Speaker = Literal["manager", "client"]
Line = tuple[Speaker, float, str]


# Festival's voices by a short name: the Russian one is built from a real speaker's
# recordings and Whisper understands it nearly word for word (espeak-ng's Russian not at all).
FESTIVAL_VOICES = {
    "ru": "msu_ru_nsh_clunits",
    "slt": "cmu_us_slt_arctic_hts",
    "kal": "kal_diphone",
    "ked": "ked_diphone",
}
# What Festival's Russian voice stops at instead of reading it.
UNSPOKEN = str.maketrans({"«": None, "»": None, "„": None, "“": None})


@dataclass(frozen=True)
class Voices:
    """The voices of the two sides: an espeak-ng voice (`en-us+m3`), or a Festival voice
    (`festival:ru`), either with `@shift` to raise (above 1) or lower every pitch and
    formant by that factor, keeping the tempo: another speaker (`festival:ru@1.28`)."""

    manager: str = "en-us"
    client: str = "en-us"

    def of(self, speaker: Speaker) -> str:
        return self.manager if speaker == "manager" else self.client


@dataclass(frozen=True)
class Spoken:
    """Where a line really sounds in a generated call: the ground truth of a test."""

    speaker: Speaker
    start_s: float
    end_s: float
    text: str


def one_after_another(
    said: Sequence[tuple[Speaker, str]],
    voices: Voices,
    *,
    pause_s: Callable[[], float] = lambda: 0.7,
    start_s: float = 1.0,
) -> tuple[list[Line], float]:
    """Lines that follow each other, each a pause after its predecessor ends (as long as
    its voice takes to say it), and the call's length: 2 s after the last line."""
    lines: list[Line] = []
    for speaker, text in said:
        lines.append((speaker, start_s, text))
        start_s += spoken_s(text, voices.of(speaker)) + pause_s()
    return lines, start_s + 2.0


def spoken_s(text: str, voice: str) -> float:
    """How long a voice of `Voices` takes to say a line (to lay out a call's lines)."""
    return len(_speak(text, voice, SPOKEN_RATE_HZ)) / SPOKEN_RATE_HZ


SPOKEN_RATE_HZ = 16000


@functools.lru_cache(maxsize=1024)
def _speak(text: str, voice: str, sample_rate_hz: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A line spoken by a voice of `Voices`, resampled by ffmpeg, as samples in [-1, 1]
    (remembered: calls of a set repeat their lines; never written to)."""
    name, _, shift = voice.partition("@")
    with tempfile.TemporaryDirectory() as temp:
        spoken, pcm = Path(temp) / "line.wav", Path(temp) / "line.pcm"
        if name.startswith("festival:"):
            script = Path(temp) / "line.txt"
            script.write_text(text.translate(UNSPOKEN) + "\n", encoding="utf-8")
            festival = FESTIVAL_VOICES[name.removeprefix("festival:")]
            command = ["text2wave", "-eval", f"(voice_{festival})", "-o", str(spoken), str(script)]
        else:
            command = ["espeak-ng", "-v", name, "-s", "150", "-w", str(spoken), text]
        subprocess.run(command, check=True, capture_output=True)
        if not spoken.exists():  # Festival says nothing of a voice it does not have
            raise RuntimeError(f"no voice {name} here: see the README's packages")
        factor = float(shift or 1)
        shifted = (
            [
                "-af",
                f"asetrate={_rate(spoken)}*{factor},aresample={sample_rate_hz},atempo={1 / factor}",
            ]
            if shift
            else []
        )
        subprocess.run(
            [
                *("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(spoken), *shifted),
                *("-ac", "1", "-ar", str(sample_rate_hz), "-f", "s16le", str(pcm)),
            ],
            check=True,
        )
        samples = np.fromfile(pcm, dtype=np.int16) / 32768.0
        samples.flags.writeable = False
        return samples


def _rate(path: Path) -> int:
    with wave.open(str(path)) as audio:
        return int(audio.getframerate())


def pink_noise(samples: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Unit-RMS pink (1/f) noise."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(samples))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, samples)
    return noise / (np.sqrt(np.mean(noise**2)) or 1.0)


def _delayed(track: np.ndarray[Any, Any], samples: int) -> np.ndarray[Any, Any]:
    return np.concatenate([np.zeros(samples), track[: len(track) - samples]])


def write_call(
    path: Path,
    lines: Sequence[Line],
    *,
    duration_s: float,
    stereo: bool = True,
    sample_rate_hz: int = 16000,
    voices: Voices = Voices(),
    encoding: str | None = None,
    noise_snr_db: float | None = None,
    leak_db: float | None = None,
    leak_delay_ms: float = 40.0,
) -> list[Spoken]:
    """A call with each line spoken at its start time: the manager on the left channel and
    the client on the right (stereo), or both mixed (mono); silence everywhere else.

    `encoding` names an entry of ENCODINGS (else the extension picks the codec);
    `noise_snr_db` adds pink noise that much below the speech; `leak_db` leaks each side
    into the other's channel that much quieter and `leak_delay_ms` late (line echo).
    Returns where each line really sounds.
    """
    length = int(duration_s * sample_rate_hz)
    sides = {"manager": np.zeros(length), "client": np.zeros(length)}
    spoken: list[Spoken] = []
    for speaker, start_s, text in lines:
        voice = _speak(text, voices.of(speaker), sample_rate_hz)
        start = int(start_s * sample_rate_hz)
        end = min(start + len(voice), length)
        sides[speaker][start:end] += voice[: end - start]
        spoken.append(Spoken(speaker, start_s, end / sample_rate_hz, text))
    manager, client = sides["manager"], sides["client"]
    if leak_db is not None:
        gain, delay = 10 ** (leak_db / 20), int(leak_delay_ms / 1000 * sample_rate_hz)
        manager, client = (
            manager + gain * _delayed(client, delay),
            client + gain * _delayed(manager, delay),
        )
    tracks = np.stack([manager, client]) if stereo else (manager + client)[None, :]
    if noise_snr_db is not None:
        speech = tracks[np.abs(tracks) > 1e-3]
        level = np.sqrt(np.mean(speech**2)) if len(speech) else 0.1
        for index, track in enumerate(tracks):
            track += level * 10 ** (-noise_snr_db / 20) * pink_noise(length, seed=index)
    pcm = (np.clip(tracks, -1.0, 1.0) * 32767).astype(np.int16).T.copy()
    with tempfile.TemporaryDirectory() as temp:
        wav = Path(temp) / "call.wav"
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(tracks.shape[0])
            out.setsampwidth(2)
            out.setframerate(sample_rate_hz)
            out.writeframes(pcm.tobytes())
        codec = ENCODINGS[encoding] if encoding else []
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), *codec, str(path)],
            check=True,
        )
    return spoken


def analysis_results(
    *,
    binding_id: str = "bnd_1",
    passed: int = 1,
    applicable: int = 2,
    talk_ratio: float = 0.5,
    table_id: str | None = None,
    table_row: dict[str, Any] | None = None,
) -> Results:
    """What the analyzer stores for a call with one checklist (`passed` of `applicable`
    stages) and, with `table_id`, one table row."""
    stages: list[StageResult] = [
        {
            "name": f"Этап {n + 1}",
            "applicable": True,
            "passed": n < passed,
            "evaluated": True,
            "completion": 100.0 if n < passed else 0.0,
            "evidence": [
                {"text": "добрый день", "start_s": 1.0, "end_s": 2.0, "speaker": "manager"}
            ]
            if n < passed
            else [],
            "recommendation": None if n < passed else "Назовите компанию",
            "notes": [],
        }
        for n in range(applicable)
    ]
    return {
        "checklists": [
            {
                "binding_id": binding_id,
                "template": {"id": "tpl_1", "name": "Первичный звонок"},
                "score": {
                    "passed": passed,
                    "applicable": applicable,
                    "percent": round(100 * passed / applicable, 1),
                    "text": f"{passed}/{applicable}",
                },
                "stages": stages,
            }
        ],
        "tables": [
            {"table_id": table_id, "name": "Сделки", "row": table_row or {}, "null_reasons": {}}
        ]
        if table_id
        else [],
        "metrics": {
            "duration_s": 60.0,
            "talk_time_manager_s": round(40 * talk_ratio, 1),
            "talk_time_client_s": round(40 * (1 - talk_ratio), 1),
            "talk_ratio": talk_ratio,
            "longest_monologue_s": 12.0,
            "silence_s": 20.0,
            "interruptions": 1,
            "words_per_minute_manager": 130.0,
        },
    }


def analysed_call(
    index: int,
    *,
    manager_id: str = "mgr_1",
    passed: int = 1,
    applicable: int = 2,
    days_ago: float = 0.0,
    talk_ratio: float = 0.5,
    table_id: str | None = None,
) -> dict[str, Any]:
    """A task as the pipeline leaves it once analysed and delivered (for list and card views:
    tests and benchmarks)."""
    at = datetime.now(UTC) - timedelta(days=days_ago)
    results = analysis_results(
        passed=passed,
        applicable=applicable,
        talk_ratio=talk_ratio,
        table_id=table_id,
        table_row={"budget": 1000 * index},
    )
    score: OverallScore = {
        "passed": passed,
        "applicable": applicable,
        "percent": round(100 * passed / applicable, 1),
        "perfect": passed == applicable,
    }
    return {
        "_id": f"task_{index:012d}",
        "call_id": f"call_{index}",
        "deal_id": f"deal_{index}",
        "manager_id": manager_id,
        "manager_name": f"Менеджер {manager_id}",
        "stage_id": "funnel_1",
        "deal_stage_id": "qual",
        "stage": "Продажи",
        "audio_url": f"http://127.0.0.1:9/{index}.wav",
        "status": "done",
        "received_at": at,
        "updated_at": at,
        "timeline": [{"status": "queued", "at": at}, {"status": "done", "at": at}],
        "score": score,
        "results": results,
        "details_id": f"details_{index:012d}",
    }


def sample_details(call: dict[str, Any], **heavy: Any) -> dict[str, Any]:
    """The heavy parts of an `analysed_call` (`shared/call_details.py`): a two-line
    transcript unless `heavy` gives one, and whatever else `heavy` holds."""
    transcript = [
        {"speaker": "manager", "start_s": 1.0, "end_s": 2.0, "text": "добрый день", "words": []},
        {"speaker": "client", "start_s": 2.5, "end_s": 4.0, "text": "здравствуйте", "words": []},
    ]
    return {"_id": call["details_id"], "task_id": call["_id"], "transcript": transcript, **heavy}


def comparable_words(text: str) -> list[str]:
    """A text's words as a word error rate compares them: lower case, `ё` as `е`, no
    punctuation, every number as its value («триста пятьдесят тысяч», «350 000»: 350000),
    «процентов» as «%»."""
    parts = WORD.findall(text)
    return [
        read if is_number(read) or read == "%" else parts[first].lower().replace("ё", "е")
        for read, first, _ in numbers_read(parts)
    ]


def word_error_rate(spoken: Sequence[str], heard: Sequence[str]) -> tuple[int, int]:
    """Words to substitute, insert or delete to turn what was heard into what was said,
    and the words said (their ratio is the WER): texts in any number of pieces."""
    said = [word for text in spoken for word in comparable_words(text)]
    recognised = [word for text in heard for word in comparable_words(text)]
    return Levenshtein.distance(said, recognised), len(said)
