"""The only place that builds the analyzer's concrete adapters from settings."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from openai import AsyncOpenAI

from services.analyzer.asr import Decoding, RemoteTranscriber, Transcriber, WhisperTranscriber
from services.analyzer.handlers import Analyzer
from services.analyzer.llm import LlmJudge
from services.analyzer.voice_encoder import VoiceEncoder
from shared.health import worker_connections
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)


def load_transcriber(settings: Settings) -> Transcriber:
    """Load the ASR model once; a model that cannot load stops the service with a message."""
    if settings.asr_backend == "remote":
        return RemoteTranscriber(
            settings.asr_remote_url or "",
            model=settings.asr_remote_model,
            api_key=(
                settings.asr_remote_api_key.get_secret_value()
                if settings.asr_remote_api_key
                else None
            ),
        )
    try:
        return WhisperTranscriber(
            settings.asr_model,
            cache_dir=settings.asr_model_cache_dir,
            device=settings.asr_device,
            compute_type=settings.asr_compute_type,
            decoding=Decoding(
                beam_size=settings.asr_beam_size,
                bias=settings.asr_bias,
                temperature_fallback=settings.asr_temperature_fallback,
                no_repeat_ngram_size=settings.asr_no_repeat_ngram_size,
                condition_on_previous_text=settings.asr_condition_on_previous_text,
                no_speech_threshold=settings.asr_no_speech_threshold,
                log_prob_threshold=settings.asr_log_prob_threshold,
                compression_ratio_threshold=settings.asr_compression_ratio_threshold,
            ),
        )
    except Exception as exc:
        sys.exit(f"Cannot load the ASR model {settings.asr_model!r} (ROP_ASR_MODEL): {exc}")


def load_voice_encoder() -> VoiceEncoder:
    """The speaker embedding model; a missing or wrong file stops the service with a message."""
    try:
        return VoiceEncoder()
    except (OSError, ValueError) as exc:
        sys.exit(f"Cannot load the speaker model: {exc}")


def llm_judge(settings: Settings) -> LlmJudge | None:
    """The `llm` method's model, or None when `ROP_LLM_BASE_URL` is not set."""
    if settings.llm_base_url is None:
        return None
    client = AsyncOpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else "unused",
        timeout=settings.llm_timeout_s,
        max_retries=0,  # LlmJudge retries, with its own bounds
    )
    return LlmJudge(client, settings.llm_model or "")


@contextlib.asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[Analyzer]:
    """Load the model, then connect to Mongo and the broker."""
    transcriber = load_transcriber(settings)
    encoder = load_voice_encoder()
    log.info("asr_ready", backend=settings.asr_backend, model=settings.asr_model)
    llm = llm_judge(settings)
    try:
        async with worker_connections(settings) as (db, broker):
            yield Analyzer(
                db=db,
                broker=broker,
                transcriber=transcriber,
                encoder=encoder,
                llm=llm,
                part_s=settings.analysis_part_s,
                manager_channel=settings.manager_channel,
                role_cues=settings.role_cues,
                voiceprint_min_similarity=settings.voiceprint_min_similarity,
                voiceprint_min_margin=settings.voiceprint_min_margin,
                lease_s=settings.analysis_lease_s,
                heartbeat_s=settings.analysis_heartbeat_s,
                max_attempts=settings.analysis_max_attempts,
            )
    finally:
        if llm is not None:
            await llm.close()
