"""Environment defaults of the ``relisten`` command's own options (``up``, ``transcribe``).

The services read their settings from their own classes; these are the variables only the command
reads, each the default of the command-line option of the same name. They are a settings class so that
the README's configuration table documents them with everything else (``relisten.settings_doc``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommandSettings(BaseSettings):
    """Defaults of ``relisten up`` and ``relisten transcribe`` (prefix ``RELISTEN_``)."""

    model_config = SettingsConfigDict(env_prefix="RELISTEN_", extra="ignore")

    port: int = Field(
        8000, ge=0, le=65535, description="`relisten up --port`: port of the HTTP API it starts."
    )
    nats_port: int = Field(
        4222,
        ge=0,
        le=65535,
        description="`relisten up --nats-port`: client port of the embedded nats-server (the first one "
        "of a cluster); unused when RELISTEN_NATS_URL is set.",
    )
    data_dir: Path = Field(
        Path("var"),
        description="`relisten up --data-dir`: where the embedded nats-server keeps its JetStream store.",
    )
    nats_cluster: int = Field(
        1,
        description="`relisten up --nats-cluster`: nats-server processes run as one JetStream cluster on "
        "loopback, with that many replicas of the stream and buckets (see Scaling out).",
    )
    replicas: str = Field(
        "",
        description="`relisten up --replicas`: processes per service, e.g. `asr=2,corrector=2` (1 for any "
        "service not named).",
    )
    nats_sync_interval: str = Field(
        "always",
        description="`relisten up --nats-sync-interval`: the embedded JetStream fsyncs every write "
        "(`always`), or every so often (`10s`; `default` = the server's 2 min); see Durability of the "
        "embedded NATS.",
    )
    server: str = Field(
        "http://127.0.0.1:8000",
        description="`relisten transcribe --server`: the relisten API a recording is uploaded to; also "
        "`relisten live --url` (its realtime WebSocket, `/v1/realtime`).",
    )
    api_key: str | None = Field(
        None,
        description="`relisten transcribe --api-key` and `relisten live --api-key`: bearer key sent to that "
        "API (one of its RELISTEN_INGEST_API_KEYS).",
    )
