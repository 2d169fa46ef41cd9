"""Configuration of every service: `ROP_` environment variables, validated at start."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[tuple[str, ...], NoDecode]


def is_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this machine knows (tzdata ships with us)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def default_model_cache_dir() -> Path:
    """The user's cache (`$XDG_CACHE_HOME`, else `~/.cache`), under `rop/models`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "rop", "models")


class Settings(BaseSettings):
    """Everything a service reads from its environment (SPEC §6)."""

    model_config = SettingsConfigDict(env_prefix="ROP_", extra="ignore", frozen=True)

    mongo_url: str = Field(
        "mongodb://127.0.0.1:27017/rop",
        description="MongoDB connection string; its path names the database.",
    )
    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/", description="RabbitMQ URL.")
    amqp_prefix: str = Field(
        "rop",
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$",
        description="Prefix of every exchange and queue name: one system per prefix.",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    health_port: int = Field(
        8081, ge=1, le=65535, description="Health and metrics port of a worker service."
    )
    public_base_url: str | None = Field(
        None,
        description="Base URL the CRM reaches the API at; taken from the request when unset.",
    )
    api_key: SecretStr | None = Field(
        None, description="Used as the API key on first start; generated when unset."
    )
    admin_email: str = Field("admin@rop.local", min_length=3, max_length=254)
    admin_password: SecretStr | None = Field(
        None, description="Initial admin password; generated into state_dir when unset."
    )
    state_dir: Path = Field(
        Path(".data"), description="Where files for the operator (generated password) go."
    )
    session_ttl_s: int = Field(12 * 3600, ge=60)
    trusted_proxy_hops: int = Field(
        0,
        ge=0,
        le=8,
        description="Proxies in front of the gateway that append to X-Forwarded-For; "
        "0 takes the caller's address from the connection.",
    )
    timezone: str = Field(
        "Europe/Moscow",
        description="IANA zone of the people using the web app: days of filters and charts.",
    )
    seed_samples: bool = Field(
        True, description="Make a sample script, binding and table on the very first start."
    )
    fetch_allow_loopback: bool = False
    fetch_allow_private: bool = Field(
        True, description="Private ranges hold the company's own file servers (the seed)."
    )
    fetch_ports: CommaList = Field((), description="Allowed ports; empty allows any.")
    fetch_allow_hosts: CommaList = Field((), description="Only these hosts (`*.suffix` ok).")
    fetch_deny_hosts: CommaList = ()
    fetch_allow_cidrs: CommaList = Field((), description="Only addresses in these networks.")
    fetch_deny_cidrs: CommaList = ()
    download_max_bytes: int = Field(500_000_000, ge=1)
    download_connect_timeout_s: float = Field(10.0, gt=0)
    download_read_timeout_s: float = Field(30.0, gt=0)
    download_total_timeout_s: float = Field(1800.0, gt=0)
    download_attempts: int = Field(4, ge=1, le=20)
    download_retry_initial_s: float = Field(2.0, ge=0)
    download_retry_max_s: float = Field(60.0, ge=0)
    downloader_prefetch: int = Field(4, ge=1, le=100)
    max_call_duration_s: float = Field(4 * 3600, gt=0, description="Hard limit of a call.")
    download_min_audio_share: float = Field(
        0.9,
        gt=0,
        le=1,
        description="A file decoding to less of the length its headers claim is cut (not_audio).",
    )
    audio_retention_days: float = Field(90, gt=0)
    webhook_timeout_s: float = Field(15.0, gt=0, description="A 2xx within this is success.")
    webhook_retry_schedule_s: CommaList = Field(
        ("5", "300", "1800", "7200", "18000", "36000", "36000"),
        description="Waits before each retry (SPEC §3); after the last, a delivery is dead.",
    )
    webhook_retry_jitter: float = Field(0.1, ge=0, le=0.5)
    webhook_endpoint_concurrency: int = Field(4, ge=1, le=100)
    notifier_prefetch: int = Field(32, ge=1, le=1000)
    estimate_calls_per_minute: float = Field(
        4.0, gt=0, description="Analysis throughput used to estimate the processing time."
    )
    outbox_poll_interval_s: float = Field(1.0, gt=0, le=60)

    asr_model: str = Field(
        "base",
        description="base (shipped: multilingual Whisper base), tiny.en (shipped: English "
        "only) or the path of a CTranslate2 model folder; never downloaded.",
    )
    asr_model_cache_dir: Path = Field(
        default_factory=lambda: default_model_cache_dir(),
        description="Where the shipped multilingual model is joined from its packages, once.",
    )
    asr_device: Literal["auto", "cpu", "cuda"] = "auto"
    asr_compute_type: str = "int8"
    asr_beam_size: int = Field(
        5, ge=1, le=10, description="Beam search width (1: greedy); see docs/analysis.md."
    )
    asr_bias: bool = Field(
        False, description="The call's script and table phrases go to the ASR as hotwords."
    )
    asr_temperature_fallback: bool = Field(
        False, description="Decode a doubtful window again at higher temperatures (slower)."
    )
    asr_no_repeat_ngram_size: int = Field(
        3, ge=0, le=10, description="Never repeat a run of this many tokens (0: allowed)."
    )
    asr_condition_on_previous_text: bool = False
    asr_no_speech_threshold: float = Field(
        0.6, ge=0, le=1, description="Skip a segment this likely silent (and unsure)."
    )
    asr_log_prob_threshold: float = Field(
        -1.0, le=0, description="...unsure meaning an average log-probability below this."
    )
    asr_compression_ratio_threshold: float = Field(
        2.4, gt=1, description="A segment compressing better than this is a loop: dropped."
    )
    asr_backend: Literal["local", "remote"] = Field(
        "local", description="faster-whisper in the process, or an OpenAI-compatible endpoint."
    )
    asr_remote_url: str | None = Field(None, description="Base URL, e.g. https://host/v1.")
    asr_remote_api_key: SecretStr | None = None
    asr_remote_model: str = "whisper-1"
    manager_channel: Literal["left", "right"] = Field(
        "left", description="Which channel of a stereo recording is the manager."
    )
    role_cues: CommaList = Field(
        (
            "меня зовут",
            "вас беспокоит",
            "звоню из компании",
            "представляю компанию",
            "удобно говорить",
            "my name is",
            "calling from",
            "on behalf of",
            "is it a good time",
        ),
        description="What managers say and clients rarely do: tells who is who on a mono call.",
    )
    voiceprint_min_similarity: float = Field(
        0.9, ge=0, le=1, description="A mono voice this close to the manager's voiceprint is them."
    )
    voiceprint_min_margin: float = Field(
        0.05, ge=0, le=1, description="…and this much closer than the other voice."
    )
    analysis_part_s: float = Field(2700.0, ge=60, description="Longer calls are split in parts.")
    analysis_lease_s: float = Field(
        300.0, ge=10, description="A job not renewed for this long is taken over by another worker."
    )
    analysis_max_attempts: int = Field(3, ge=1, le=10)
    analysis_heartbeat_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Analyzers beat this often; one silent for 4 beats is gone (its job freed).",
    )

    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    llm_timeout_s: float = Field(60.0, gt=0)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    @field_validator(
        "api_key",
        "admin_password",
        "public_base_url",
        "asr_remote_url",
        "asr_remote_api_key",
        "llm_base_url",
        "llm_api_key",
        "llm_model",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose and k8s pass unset optional variables as empty strings.
        return None if value == "" else value

    @field_validator(
        "fetch_ports",
        "fetch_allow_hosts",
        "fetch_deny_hosts",
        "fetch_allow_cidrs",
        "fetch_deny_cidrs",
        "webhook_retry_schedule_s",
        "role_cues",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("fetch_ports")
    @classmethod
    def _ports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for port in value:
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{port!r} is not a port")
        return value

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _schedule(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for delay in value:
            try:
                seconds = float(delay)
            except ValueError as exc:
                raise ValueError(f"{delay!r} is not a number of seconds") from exc
            if seconds < 0:
                raise ValueError("delays cannot be negative")
        if len(value) > 20:
            raise ValueError("at most 20 retries")
        return value

    @field_validator("fetch_allow_cidrs", "fetch_deny_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    def initial_api_key(self) -> str | None:
        """The configured API key for the first start, if any."""
        return self.api_key.get_secret_value() if self.api_key else None

    @model_validator(mode="after")
    def _endpoints_are_complete(self) -> Settings:
        if self.llm_base_url is not None and not self.llm_model:
            raise ValueError("ROP_LLM_MODEL must name the model when ROP_LLM_BASE_URL is set")
        if self.asr_backend == "remote" and self.asr_remote_url is None:
            raise ValueError("ROP_ASR_REMOTE_URL is needed when ROP_ASR_BACKEND=remote")
        return self

    @field_validator("mongo_url")
    @classmethod
    def _mongo_url_names_database(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mongodb", "mongodb+srv"):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        if not parts.path.strip("/"):
            raise ValueError("must name the database, e.g. mongodb://host:27017/rop")
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("amqp", "amqps"):
            raise ValueError("must start with amqp:// or amqps://")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_zone(value):
            raise ValueError(f"unknown time zone {value!r} (an IANA name like Europe/Moscow)")
        return value

    @field_validator("public_base_url", "llm_base_url", "asr_remote_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


def load_settings() -> Settings:
    """Read the environment; a bad value stops the process with a readable message."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"  ROP_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            if error["loc"]
            else f"  {error['msg']}"
            for error in exc.errors()
        ]
        sys.exit("Invalid configuration:\n" + "\n".join(lines))
