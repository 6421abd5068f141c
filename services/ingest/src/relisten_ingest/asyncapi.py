"""The AsyncAPI 3.0 document of the pipeline events, built from the contracts themselves.

Payload schemas come from ``msgspec.json.schema_components`` over the event types, so the document
cannot drift from what is on the wire; channels are the :class:`~relisten_contracts.Subject` values;
operations say which service sends and which receives each event (and through which durable
consumer), generated from the step declarations of :mod:`relisten_contracts.flow` that every service's
worker binds its handlers to (a test checks the services bind exactly those). Pure: served at
``/asyncapi.json``.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from relisten_contracts import (
    ClipCorrected,
    ClipResult,
    ClipsReady,
    Event,
    FirstPass,
    JobCreated,
    JobDeleted,
    JobFailed,
    JobMerged,
    JobProgress,
    JobRetried,
    Subject,
    Transcript,
    WordsScored,
    flow,
    subject_for,
)

EVENTS: Final[tuple[type[Event], ...]] = (
    JobCreated,
    JobProgress,
    WordsScored,
    ClipsReady,
    ClipCorrected,
    JobMerged,
    JobFailed,
    JobDeleted,
    JobRetried,
)
DOCUMENTS: Final = (FirstPass, ClipResult, Transcript)
"""Stored in the Object Store and KV, referred to by the events: described alongside them."""

_SCHEMAS = "#/components/schemas/{name}"


def _channel_id(subject: Subject) -> str:
    return subject.name.lower()


def _server(nats_url: str) -> dict[str, Any]:
    first = nats_url.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"nats://{first}")
    # Host and port only: a URL's user and password must not be published.
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return {"host": host, "protocol": parts.scheme or "nats", "description": "NATS JetStream"}


def build_asyncapi(*, version: str, nats_url: str, stream: str) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every pipeline event."""
    _, schemas = msgspec.json.schema_components((*EVENTS, *DOCUMENTS), ref_template=_SCHEMAS)
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event in EVENTS:
        tag = str(event.__struct_config__.tag)
        subject = subject_for(tag)
        channel = _channel_id(subject)
        name = event.__name__
        messages[name] = {
            "name": tag,
            "title": name,
            "summary": (event.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {
                        "type": "string",
                        "description": "Deterministic id: JetStream drops a re-publication of the same event.",
                    }
                },
            },
            "payload": {"$ref": _SCHEMAS.format(name=name)},
        }
        channels[channel] = {
            "address": str(subject),
            "description": f"Stream {stream}. Payload type tag {tag!r}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        reference = {
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }
        for service in flow.senders(event):
            operations[f"{service}.send.{channel}"] = {
                "action": "send",
                "title": f"{service} publishes",
                **reference,
            }
        for step in flow.receivers(subject):
            operations[f"{step.service}.receive.{channel}"] = {
                "action": "receive",
                "title": f"{step.service} consumes",
                "summary": step.summary,
                "description": f"Durable pull consumer {step.durable!r}.",
                **reference,
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "relisten pipeline events",
            "version": version,
            "description": (
                "Events between relisten's services over NATS JetStream. Payloads carry Object "
                "Store references, never audio; every event names its job."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"nats": _server(nats_url)},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
