"""Echo between stereo channels, on synthetic signals: what is silenced and what is kept."""

from __future__ import annotations

import numpy as np

from services.analyzer.audio import SAMPLE_RATE_HZ
from services.analyzer.echo import FRAME, echo_frames, remove_echo

RATE = SAMPLE_RATE_HZ
DURATION_S = 8.0


def _speech(spans: list[tuple[float, float]], seed: int, level: float = 0.3) -> np.ndarray:
    """Noise with a syllable-like 4 Hz loudness contour inside each span, silence elsewhere."""
    rng = np.random.default_rng(seed)
    track = np.zeros(int(DURATION_S * RATE), dtype=np.float32)
    for start_s, end_s in spans:
        start, end = int(start_s * RATE), int(end_s * RATE)
        contour = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * np.arange(end - start) / RATE)
        track[start:end] = level * contour * rng.standard_normal(end - start)
    return track


def _leak(track: np.ndarray, db: float, delay_ms: float = 40.0) -> np.ndarray:
    delay = int(delay_ms / 1000 * RATE)
    return 10 ** (db / 20) * np.concatenate([np.zeros(delay), track[:-delay]]).astype(np.float32)


def _rms(track: np.ndarray, start_s: float, end_s: float) -> float:
    return float(np.sqrt(np.mean(track[int(start_s * RATE) : int(end_s * RATE)] ** 2)))


MANAGER = [(0.5, 2.5), (5.0, 6.5)]
CLIENT = [(3.0, 4.5), (6.0, 7.5)]  # 6.0-6.5: both speak at once


def test_the_other_sides_echo_is_silenced_and_own_speech_kept() -> None:
    manager_own, client_own = _speech(MANAGER, 1), _speech(CLIENT, 2)
    manager = manager_own + _leak(client_own, -24)
    client = client_own + _leak(manager_own, -24)
    cleaned_manager, cleaned_client = remove_echo(manager, client)

    # Where only the manager speaks, the client channel carried only the echo: gone.
    assert _rms(cleaned_client, 0.7, 2.4) < 0.01 * _rms(client, 0.7, 2.4)
    assert _rms(cleaned_manager, 3.2, 4.4) < 0.01 * _rms(manager, 3.2, 4.4)
    # Each side's own speech stays, talking at once included.
    for track, cleaned, spans in (
        (client, cleaned_client, CLIENT),
        (manager, cleaned_manager, MANAGER),
    ):
        for start_s, end_s in spans:
            assert _rms(cleaned, start_s + 0.1, end_s - 0.1) > 0.95 * _rms(
                track, start_s + 0.1, end_s - 0.1
            )


def test_a_voice_less_than_12_db_below_the_other_side_is_kept() -> None:
    manager_own = _speech(MANAGER, 1)
    # The line leaks at -30 dB; the client says "uh-huh" 8 dB softer than the manager.
    client = _speech([(1.0, 2.0)], 3, level=0.3 * 10 ** (-8 / 20)) + _leak(manager_own, -30)
    frames = echo_frames(client, manager_own)
    assert not frames[int(1.1 * 100) : int(1.9 * 100)].any()
    assert frames[int(0.7 * 100) : int(0.85 * 100)].all()


def test_nothing_is_silenced_without_the_other_side_speaking() -> None:
    client = _speech(CLIENT, 2)
    silent = np.zeros_like(client)
    assert not echo_frames(client, silent).any()
    cleaned, _ = remove_echo(client, silent)
    assert np.array_equal(cleaned, client)
    assert len(echo_frames(client, silent)) == len(client) // FRAME
