"""Typed settings from the environment, built once per process; one naming scheme for all of them.

- the fields every service shares (this module's ``CommonSettings``) are ``RELISTEN_<FIELD>``
  (``RELISTEN_NATS_URL``, ``RELISTEN_LOG_LEVEL``);
- a service's own fields are ``RELISTEN_<SERVICE>_<FIELD>`` (``RELISTEN_INGEST_PORT``,
  ``RELISTEN_MERGER_MAX_DRIFT``, ``RELISTEN_ASR_BASE_URL``): the services usually share one environment,
  and a setting meant for one (a key, a URL) must never reach another by accident.

Before this scheme ingest, clipper, merger and notifier read their own fields as ``RELISTEN_<FIELD>``.
Those names are still read, as deprecated aliases (``deprecated_unprefixed``): the new name wins when
both are set, and each old name in use is logged once as a deprecation warning.

``env_name`` says which variable a field is read from; the README's configuration table is generated
from these classes (``python -m relisten.settings_doc --write``).
"""

import logging
import os
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

log = logging.getLogger(__name__)

PREFIX = "RELISTEN_"

_warned: set[str] = set()
"""Deprecated variables already logged in this process (each is logged once)."""


class _FieldsFromEnv(EnvSettingsSource):
    """The environment under one prefix, limited to some fields (the others belong to another prefix)."""

    def __init__(self, settings_cls: type[BaseSettings], prefix: str, fields: Iterable[str]) -> None:
        super().__init__(settings_cls, env_prefix=prefix)
        self._fields = frozenset(fields)

    def __call__(self) -> dict[str, Any]:
        return {key: value for key, value in super().__call__().items() if key in self._fields}


class _DeprecatedFromEnv(_FieldsFromEnv):
    """The old ``RELISTEN_<FIELD>`` names of a service's own fields: read only where the new name is not
    set, and each one in use logged once as deprecated."""

    def __init__(
        self, settings_cls: type[BaseSettings], old_prefix: str, new_prefix: str, fields: Iterable[str]
    ) -> None:
        super().__init__(settings_cls, old_prefix, fields)
        self._old_prefix = old_prefix
        self._new_prefix = new_prefix

    def __call__(self) -> dict[str, Any]:
        present = {name.upper() for name in os.environ}
        values: dict[str, Any] = {}
        for key, value in super().__call__().items():
            old, new = f"{self._old_prefix}{key}".upper(), f"{self._new_prefix}{key}".upper()
            if new in present:
                continue
            values[key] = value
            if old not in _warned:
                _warned.add(old)
                log.warning("%s is deprecated and will stop working: set %s instead", old, new)
        return values


class CommonSettings(BaseSettings):
    """Settings every service reads. Each service extends this with its own fields."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    service: ClassVar[str | None] = None
    """The service these settings belong to: its own fields are ``RELISTEN_<SERVICE>_<FIELD>``."""
    deprecated_unprefixed: ClassVar[bool] = False
    """The service's own fields were once ``RELISTEN_<FIELD>``: those names are still read (deprecated)."""

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
        if cls.service is None:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        shared = set(CommonSettings.model_fields)
        own = set(cls.model_fields) - shared
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _FieldsFromEnv(settings_cls, own_prefix(cls), own),
            _FieldsFromEnv(settings_cls, PREFIX, shared),
        ]
        if cls.deprecated_unprefixed:
            sources.append(_DeprecatedFromEnv(settings_cls, PREFIX, own_prefix(cls), own))
        return tuple(sources)


def own_prefix(settings_cls: type[CommonSettings]) -> str:
    """``RELISTEN_<SERVICE>_``: the prefix of a service's own fields."""
    if settings_cls.service is None:
        return PREFIX
    return f"{PREFIX}{settings_cls.service.upper()}_"


def env_name(settings_cls: type[CommonSettings], field: str) -> str:
    """The environment variable ``settings_cls`` reads ``field`` from."""
    if field not in settings_cls.model_fields:
        raise KeyError(f"{settings_cls.__name__} has no field {field!r}")
    prefix = PREFIX if field in CommonSettings.model_fields else own_prefix(settings_cls)
    return f"{prefix}{field.upper()}"


def deprecated_env_name(settings_cls: type[CommonSettings], field: str) -> str | None:
    """The old name ``settings_cls`` still reads ``field`` from (deprecated), or None."""
    if settings_cls.deprecated_unprefixed and env_name(settings_cls, field) != f"{PREFIX}{field.upper()}":
        return f"{PREFIX}{field.upper()}"
    return None
