"""One encoder/decoder pair for every event, and the deterministic message ids."""

import msgspec

from relisten_contracts.events import AnyEvent, ClipCorrected, Event, JobProgress

_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode(value: object) -> bytes:
    """Encode an event or document as JSON."""
    return _encoder.encode(value)


def decode_event(data: bytes) -> AnyEvent:
    """Decode any pipeline event; raises ``msgspec.ValidationError``/``DecodeError`` on a bad payload."""
    return _event_decoder.decode(data)


def message_id(event: Event) -> str:
    """Deterministic ``Nats-Msg-Id``: the same logical event always gets the same id, so a handler that
    runs twice (redelivery, a second replica) publishes a duplicate that JetStream drops."""
    tag = type(event).__struct_config__.tag
    # A re-run (attempt 1, 2, ...) gets ids of its own; attempt 0 keeps the ids it always had.
    run = f":a{event.attempt}" if event.attempt else ""
    if isinstance(event, ClipCorrected):
        return f"{tag}:{event.job_id}:{event.clip_index}{run}"
    if isinstance(event, JobProgress):
        return f"{tag}:{event.job_id}:{event.stage}:{round(event.progress * 100)}{run}"
    return f"{tag}:{event.job_id}{run}"
