"""The AsyncAPI document, built from the contracts (pure)."""

from __future__ import annotations

import json

from relisten_contracts import Subject
from relisten_ingest.asyncapi import EVENTS, build_asyncapi


def resolve(document: dict[str, object], ref: str) -> object:
    node: object = document
    for part in ref.removeprefix("#/").split("/"):
        assert isinstance(node, dict), ref
        node = node[part]
    return node


def test_every_subject_has_a_channel_with_its_schema() -> None:
    document = build_asyncapi(
        version="1.2.3", nats_url="nats://user:secret@nats-1:4222,nats://nats-2:4222", stream="RELISTEN"
    )
    assert document["asyncapi"] == "3.0.0" and document["info"]["version"] == "1.2.3"
    assert document["servers"]["nats"] == {
        "host": "nats-1:4222",
        "protocol": "nats",
        "description": "NATS JetStream",
    }
    assert "secret" not in json.dumps(document)
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {str(subject) for subject in Subject}
    for event in EVENTS:
        message = document["components"]["messages"][event.__name__]
        schema = resolve(document, message["payload"]["$ref"])
        assert isinstance(schema, dict)
        assert schema["properties"]["type"] == {"enum": [event.__struct_config__.tag]}
        assert "job_id" in schema["required"]


def test_every_reference_resolves() -> None:
    document = build_asyncapi(version="0", nats_url="127.0.0.1:4222", stream="RELISTEN")
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    assert refs
    for ref in refs:
        resolve(document, ref)
    assert "FirstPass" in document["components"]["schemas"]


def test_operations_show_the_flow() -> None:
    operations = build_asyncapi(version="0", nats_url="nats://h:1", stream="RELISTEN")["operations"]
    assert operations["asr.receive.job_created"]["action"] == "receive"
    assert operations["merger.send.job_merged"]["action"] == "send"
    assert (
        operations["notifier.receive.job_failed"]["description"] == "Durable pull consumer 'notifier-failed'."
    )
    assert all(f"ingest.receive.{c}" in operations for c in ("job_created", "clip_corrected", "job_failed"))
