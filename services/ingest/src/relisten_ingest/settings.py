"""Settings of the ingest service (env prefix ``RELISTEN_``): where the API listens and what it accepts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from relisten_runtime.settings import CommonSettings

GIB = 1024**3


# relisten_runtime has no py.typed: checked on its own, this package sees CommonSettings as Any.
class IngestSettings(CommonSettings):  # type: ignore[misc]
    """HTTP listener, upload limits and scratch space of the ingest API."""

    host: str = Field("127.0.0.1", description="Address the HTTP API binds to (0.0.0.0 in a container).")
    port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP API (RELISTEN_PORT).")
    max_upload_bytes: int = Field(
        2 * GIB,
        gt=0,
        description=(
            "Largest accepted request body in bytes (the file plus the few form fields); checked "
            "against Content-Length first and again while the body streams in."
        ),
    )
    max_duration_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="Longest accepted audio in seconds, measured by counting decoded samples.",
    )
    tmp_dir: Path | None = Field(
        None,
        description=(
            "Scratch directory for uploads being received and normalised (needs room for about "
            "twice the largest upload); unset: the system temporary directory."
        ),
    )
    decode_concurrency: int = Field(
        2, ge=1, description="Uploads decoded at the same time; decoding is CPU-bound and runs in threads."
    )
    max_prompt_chars: int = Field(
        4000, ge=0, description="Longest accepted glossary/context prompt, in characters."
    )
    ready_timeout_s: float = Field(
        2.0, gt=0, description="How long /readyz waits for NATS to describe the stream and buckets."
    )
    access_log: bool = Field(True, description="Log one line per HTTP request.")

    @field_validator("tmp_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def max_samples(self) -> int:
        """The duration limit in samples of the normalised 16 kHz audio."""
        return int(self.max_duration_s * 16000)
