"""Typed settings from the environment, built once per process.

Three naming schemes are in use, and kept because deployments depend on them:

- the fields every service shares (this module's ``CommonSettings``) are ``RELISTEN_<FIELD>``;
- ingest, clipper, merger and notifier read their own fields as ``RELISTEN_<FIELD>`` too (their names are
  distinct enough: ``RELISTEN_MAX_DRIFT``, ``RELISTEN_NOTIFY_SCHEDULE``);
- asr and corrector read their own fields as ``RELISTEN_ASR_<FIELD>`` and ``RELISTEN_CORRECTOR_<FIELD>``
  (``service_env_prefix``): both talk to a model server with a URL and a key, and a plain
  ``RELISTEN_API_KEY`` (the ingest API's key) must never reach a model server by accident.

``env_name`` says which variable a field is read from; the README's configuration table is generated
from these classes (``python -m relisten.settings_doc --write``).
"""

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PREFIX = "RELISTEN_"


class _FieldsFromEnv(EnvSettingsSource):
    """The environment under one prefix, limited to some fields (the others belong to another prefix)."""

    def __init__(self, settings_cls: type[BaseSettings], prefix: str, fields: Iterable[str]) -> None:
        super().__init__(settings_cls, env_prefix=prefix)
        self._fields = frozenset(fields)

    def __call__(self) -> dict[str, Any]:
        return {key: value for key, value in super().__call__().items() if key in self._fields}


class CommonSettings(BaseSettings):
    """Settings every service reads. Each service extends this with its own fields."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    # Prefix of the service's own fields (not the shared ones); asr and corrector set their own.
    service_env_prefix: ClassVar[str] = PREFIX

    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server or cluster URL(s), comma-separated. `relisten up` with this unset starts "
        "its own nats-server with JetStream (store in `var/nats`) and points the services at it.",
    )
    stream_replicas: int = Field(
        1, ge=1, le=5, description="Replicas of the stream and buckets (3 on a cluster)."
    )
    ack_wait_s: float = Field(
        60.0, gt=0, description="Seconds before an unacknowledged event is redelivered."
    )
    max_deliver: int = Field(5, ge=1, description="Deliveries of one event before its job is failed.")
    retry_backoff_s: float = Field(2.0, ge=0, description="First nack delay; doubles on every redelivery.")
    heartbeat_s: float = Field(
        10.0,
        gt=0,
        description="Interval of in-progress heartbeats during long work.",
        json_schema_extra={"internal": True},
    )
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if cls.service_env_prefix == PREFIX:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        shared = set(CommonSettings.model_fields)
        own = set(cls.model_fields) - shared
        return (
            init_settings,
            _FieldsFromEnv(settings_cls, cls.service_env_prefix, own),
            _FieldsFromEnv(settings_cls, PREFIX, shared),
        )


def env_name(settings_cls: type[CommonSettings], field: str) -> str:
    """The environment variable ``settings_cls`` reads ``field`` from."""
    if field not in settings_cls.model_fields:
        raise KeyError(f"{settings_cls.__name__} has no field {field!r}")
    prefix = PREFIX if field in CommonSettings.model_fields else settings_cls.service_env_prefix
    return f"{prefix}{field.upper()}"
