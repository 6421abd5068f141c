"""Typed settings from the environment (prefix ``RELISTEN_``), built once per process."""

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings every service reads. Each service extends this with its own fields."""

    model_config = SettingsConfigDict(env_prefix="RELISTEN_", extra="ignore")

    nats_url: str = Field(
        "nats://127.0.0.1:4222", description="NATS server or cluster URL(s), comma-separated."
    )
    stream_replicas: int = Field(
        1, ge=1, le=5, description="Replicas of the stream and buckets (3 on a cluster)."
    )
    ack_wait_s: float = Field(
        60.0, gt=0, description="Seconds before an unacknowledged event is redelivered."
    )
    max_deliver: int = Field(5, ge=1, description="Deliveries of one event before its job is failed.")
    retry_backoff_s: float = Field(2.0, ge=0, description="First nack delay; doubles on every redelivery.")
    heartbeat_s: float = Field(10.0, gt=0, description="Interval of in-progress heartbeats during long work.")
    shutdown_grace_s: float = Field(
        20.0,
        ge=0,
        description="On SIGTERM a worker stops fetching and gives in-flight events this long to finish; "
        "what is still running then is handed back to NATS at once (nak without delay).",
    )
    shutdown_deliveries: int = Field(
        3,
        ge=0,
        description="Extra deliveries each consumer allows for events handed back on shutdown, so that "
        "restarts do not use up the RELISTEN_MAX_DELIVER attempts of a job.",
    )
    max_handling_s: float = Field(
        1800.0,
        gt=0,
        description="Longest one handler may work on one event, plus RELISTEN_MAX_HANDLING_PER_AUDIO_S "
        "per second of the job's audio; after that the worker stops heartbeating and fails the job "
        "(handling_timeout).",
    )
    max_handling_per_audio_s: float = Field(
        2.0, ge=0, description="Per second of audio added to RELISTEN_MAX_HANDLING_S."
    )
    callback_private_addresses: Literal["allow", "deny"] = Field(
        "allow",
        description="'deny' refuses job callbacks to loopback, private, link-local and other internal "
        "addresses (set it where the people submitting jobs must not reach the internal network).",
    )
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "Log lines as text (with a ``job=`` field) or as one JSON object per line carrying "
            "``job_id`` (RELISTEN_LOG_FORMAT)."
        ),
    )


def model_cpu_threads(configured: int) -> int:
    """Threads for an in-process model: ``configured``, or for 0 one per CPU this process may use, at
    most 4. (CTranslate2's own default is 4 whatever the machine; on 2 cores that oversubscribes, and
    the benchmark measured the pipeline 12 % faster with 2.)"""
    if configured > 0:
        return configured
    return max(1, min(4, len(os.sched_getaffinity(0))))
