"""One settings object, read from T2IF_* environment variables (and an optional .env file)."""

from __future__ import annotations

import math
import secrets
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="T2IF_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = Field(
        "development", description="production refuses default secrets and sets Secure cookies"
    )
    database_url: str = Field(
        "sqlite:///./data/t2i-feedback.sqlite3",
        description="postgresql+psycopg://user:pass@host/db or sqlite:///path",
    )
    database_pool_size: int = Field(20, ge=1, description="connections kept per API process")
    hotpath_pool_size: int = Field(
        8, ge=1, le=200, description="asyncpg connections per API process for the annotation loop's two calls"
    )
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis)")
    storage_url: str = Field("./data/storage", description="folder or fsspec URL (s3://bucket/prefix)")
    secret_key: str = Field(DEV_SECRET_KEY, description="signs session cookies; required in production")

    # Model locations: a local folder or a hub id (production: SD v1.5 and CLIP ViT-L/14).
    generator_model: str = Field("stable-diffusion-v1-5/stable-diffusion-v1-5")
    clip_model: str = Field("openai/clip-vit-large-patch14")
    model_cache_dir: str = Field("./data/models", description="where workers keep artifacts and caches")

    # Overlap and lease defaults (each prompt set may override the first two).
    labels_per_image: int = Field(1, ge=1, le=100)
    votes_per_comparison: int = Field(9, ge=1, le=100)
    lease_seconds: int = Field(600, ge=10, le=86400)
    comparison_gold_rate: float = Field(0.0, ge=0.0, le=0.5, description="share of gold pairs per annotator")
    annotation_engine: Literal["auto", "portable"] = Field(
        "auto",
        description="auto: on Postgres the annotation loop's two calls run the asyncpg hot path and the "
        "routes' SQL fast path; portable: the SQLAlchemy engine everywhere (what SQLite always runs)",
    )
    # expired leases are returned to the pool by `next` at most this often per process
    lease_sweep_seconds: float = Field(1.0, ge=0.0)

    # Sessions and log-in throttling.
    session_hours: int = Field(12, ge=1, le=24 * 30)
    login_max_failures: int = Field(
        5, ge=1, description="failures from one client address before the account is locked for that address"
    )
    login_account_max_failures: int = Field(
        50, ge=1, description="failures from all addresses together before the account is locked for everyone"
    )
    login_lock_seconds: int = Field(300, ge=1, description="first lock; doubles with each further failure")

    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="largest request body of the upload routes (images, prompt files)"
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="largest request body of every other route (checked before log-in)"
    )

    # jobs and the closed loop
    job_max_attempts: int = Field(3, ge=1, le=20, description="tries before a job whose worker died is failed")
    job_stale_seconds: int = Field(120, ge=5, description="a running job without a heartbeat this long is lost")
    retrain_check_seconds: float = Field(30.0, ge=0.5, description="how often workers look for enough new labels")
    pretrain_dir: str | None = Field(None, description="folder of image + caption pairs for the β term")
    finetune_processes: int = Field(
        1, ge=1, le=64,
        description="processes (one per GPU) that one finetune job trains on, under `accelerate launch`; "
                    "1: in the worker's own process (worker option --gpus)")

    log_level: str = Field("INFO", description="root log level; WARNING silences the per-request access log")
    api_docs_public: bool | None = Field(
        None,
        description="serve /docs and /openapi.json to anyone; None: yes, except in production, where only "
        "researchers and admins (logged in or with a token) get them",
    )
    beat_schedule: str | None = Field(
        None, description="the periodic scheduler's state file; None: celerybeat-schedule in model_cache_dir"
    )


    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def cookie_secure(self) -> bool:
        return self.env == "production"

    @property
    def docs_public(self) -> bool:
        return self.api_docs_public if self.api_docs_public is not None else self.env != "production"

    @property
    def beat_schedule_path(self) -> Path:
        return Path(self.beat_schedule) if self.beat_schedule else Path(self.model_cache_dir) / "celerybeat-schedule"

    @model_validator(mode="after")
    def _production_needs_real_secret(self) -> Settings:
        if self.env == "production" and (
            self.secret_key == DEV_SECRET_KEY or len(self.secret_key) < 32 or secret_bits(self.secret_key) < 128
        ):
            raise ValueError(
                "T2IF_SECRET_KEY must be a random value of at least 32 characters in production; this one is "
                f"too short or too repetitive (for example, use: {secrets.token_urlsafe(32)})"
            )
        return self


def secret_bits(value: str) -> float:
    """An upper estimate of a secret's entropy: its length times the Shannon entropy of its characters.

    Catches repeated and patterned keys ("a" * 36 has 0 bits, "ab" * 32 has 64); a random hex key of
    64 characters has about 250, `secrets.token_urlsafe(32)` about 210.
    """
    counts = Counter(value)
    n = len(value)
    return -n * sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


@lru_cache
def get_settings() -> Settings:
    return Settings()
