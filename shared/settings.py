"""Configuration of every service: `ROP_` environment variables, validated at start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    fetch_allow_loopback: bool = False
    estimate_calls_per_minute: float = Field(
        4.0, gt=0, description="Analysis throughput used to estimate the processing time."
    )
    outbox_poll_interval_s: float = Field(1.0, gt=0, le=60)

    asr_model: str = "tiny.en"
    asr_device: Literal["auto", "cpu", "cuda"] = "auto"
    asr_compute_type: str = "int8"
    asr_language: str | None = None

    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    @field_validator(
        "api_key",
        "admin_password",
        "public_base_url",
        "asr_language",
        "llm_base_url",
        "llm_api_key",
        "llm_model",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose and k8s pass unset optional variables as empty strings.
        return None if value == "" else value

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

    @field_validator("public_base_url", "llm_base_url")
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
            for error in exc.errors()
        ]
        sys.exit("Invalid configuration:\n" + "\n".join(lines))
