"""Pure notifier logic: what to say about a finished job, and how to react to a receiver's answer.

* Discord: the webhook message (one embed) for ``job.merged`` / ``job.failed``, cut down to Discord's
  limits so that no payload is ever refused for its size;
* callbacks: the Standard Webhooks body and its ``webhook-*`` headers, HMAC-SHA256 signed;
* delivery: whether a response means delivered, retry (and after how long) or give up;
* identities: the delivery-latch key and the webhook id of each (job, event, target).

No I/O and no clock here: callers pass the current time in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import msgspec
from relisten_contracts import ErrorInfo, JobFailed, JobMerged, JobWarning, TranscriptStats, merged_stats
from relisten_contracts.names import job_token
from relisten_runtime.retry_after import retry_after_seconds

Notice: TypeAlias = JobMerged | JobFailed
"""The events the notifier announces."""

Kind = Literal["merged", "failed"]
Target = Literal["discord", "callback"]

# --------------------------------------------------------------------------------------------------
# Identities


safe_token = job_token
"""A job id as a KV key token and a Standard Webhooks id part (no ``.``); see
:func:`relisten_contracts.names.job_token` (deletion finds the latches by the same token)."""


def event_kind(event: Notice) -> Kind:
    """``"merged"`` or ``"failed"``."""
    return "merged" if isinstance(event, JobMerged) else "failed"


def callback_type(event: Notice) -> str:
    """The Standard Webhooks event type of a callback: ``job.completed`` or ``job.failed``."""
    return "job.completed" if isinstance(event, JobMerged) else "job.failed"


def latch_key(job_id: str, kind: Kind, target: Target, attempt: int = 0) -> str:
    """KV key recording that one (job, event, target) has been dealt with, e.g. ``j1.merged.discord``;
    a retried job's later runs get their own (``j1.failed.discord.a1``), so each run is announced."""
    run = f".a{attempt}" if attempt else ""
    return f"{safe_token(job_id)}.{kind}.{target}{run}"


def webhook_id(event: Notice) -> str:
    """The ``webhook-id`` of a job's callback: the same on every retry and redelivery, so that receivers
    can use it as their idempotency key (``msg_<job>_completed`` / ``msg_<job>_failed``; a retried
    job's later runs end in ``_a1``, ``_a2``, ...)."""
    run = f"_a{event.attempt}" if event.attempt else ""
    return f"msg_{safe_token(event.job_id)}_{callback_type(event).rsplit('.', 1)[1]}{run}"


def destination_key(target: Target, url: str) -> str:
    """KV key of a disabled destination: ``disabled.discord``, or ``disabled.callback.<hash>`` for one
    callback URL (hashed: the URL may carry a token, and keys are listed by anyone with KV access)."""
    if target == "discord":
        return "disabled.discord"
    digest = hashlib.sha256(url.encode()).hexdigest()[:32]
    return f"disabled.callback.{digest}"


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the delivery latch stores about one (job, event, target): its outcome so far."""

    outcome: str
    """``"delivered"`` or ``"gave_up"`` (final), or ``"pending"``: ``attempts`` failed so far and the
    next is due at ``next_at``."""
    attempts: int
    at: float
    status: int | None = None
    reason: str = ""
    next_at: float = 0.0

    @property
    def final(self) -> bool:
        return self.outcome != "pending"


class DisabledDestination(msgspec.Struct, frozen=True, kw_only=True):
    """A destination that answered 401, 404 or 410: not called again until ``until``."""

    target: str
    status: int
    at: float
    until: float
    reason: str = ""


# --------------------------------------------------------------------------------------------------
# Links and formats


def job_url(public_url: str, job_id: str) -> str:
    """``{public_url}/v1/jobs/{id}``."""
    return f"{public_url.rstrip('/')}/v1/jobs/{quote(job_id, safe='')}"


def transcript_url(public_url: str, job_id: str) -> str:
    """``{public_url}/v1/jobs/{id}/transcript``."""
    return f"{job_url(public_url, job_id)}/transcript"


def iso_timestamp(unix_s: float) -> str:
    """ISO-8601 in UTC with milliseconds and a ``Z`` suffix."""
    moment = datetime.fromtimestamp(unix_s, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_duration(seconds: float) -> str:
    """``"12.3 s"``, ``"4 min 05 s"``, ``"1 h 02 min 03 s"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    return f"{minutes} min {secs:02d} s"


# --------------------------------------------------------------------------------------------------
# Discord


class EmbedField(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    value: str
    inline: bool = False


class EmbedFooter(msgspec.Struct, frozen=True, kw_only=True):
    text: str


class EmbedAuthor(msgspec.Struct, frozen=True, kw_only=True):
    name: str


class Embed(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A Discord rich embed (the subset the notifier uses)."""

    title: str | None = None
    description: str | None = None
    color: int | None = None
    fields: list[EmbedField] = msgspec.field(default_factory=list)
    footer: EmbedFooter | None = None
    author: EmbedAuthor | None = None
    timestamp: str | None = None


class AllowedMentions(msgspec.Struct, frozen=True, kw_only=True):
    parse: list[str] = msgspec.field(default_factory=list)


class DiscordMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of Discord's *execute webhook* call."""

    embeds: list[Embed]
    allowed_mentions: AllowedMentions
    """Always sent, and empty: text from a transcript must never ping ``@everyone``."""
    username: str | None = None


@dataclass(frozen=True)
class EmbedLimits:
    """Discord's documented limits, in characters."""

    title: int = 256
    description: int = 4096
    fields: int = 25
    field_name: int = 256
    field_value: int = 1024
    footer: int = 2048
    author_name: int = 256
    total: int = 6000
    """Sum of title, description, field names and values, footer text and author name."""
    username: int = 80


DISCORD_LIMITS = EmbedLimits()
GREEN = 0x2ECC71
AMBER = 0xF1C40F
"""A transcript that completed with warnings (mostly unsure, possible invented text, ...)."""
RED = 0xE74C3C
ELLIPSIS = "…"
BLANK = "—"
"""Stands in for an empty field value, which Discord refuses."""
_FORBIDDEN_USERNAME_PARTS = ("discord", "clyde")
_MARKDOWN = re.compile(r"([\\*_~`|>\[\]#])")


def discord_length(text: str) -> int:
    """Length as UTF-16 code units. Never less than the number of code points, so a text within a
    limit by this count is within it whichever of the two Discord counts."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` (see :func:`discord_length`), otherwise its longest prefix
    that fits together with a trailing ellipsis. Never splits a surrogate pair."""
    if discord_length(text) <= limit:
        return text
    if limit <= 0:
        return ""
    budget = limit - discord_length(ELLIPSIS)
    used = 0
    end = 0
    for index, char in enumerate(text):
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
        end = index + 1
    return text[:end].rstrip() + ELLIPSIS


def escape_markdown(text: str) -> str:
    """Backslash-escape Discord markdown so that transcript text is shown as spoken."""
    return _MARKDOWN.sub(r"\\\1", text)


def _non_blank(text: str) -> str:
    return text if text.strip() else BLANK


def _field_length(field: EmbedField) -> int:
    return discord_length(field.name) + discord_length(field.value)


def fit_embed(embed: Embed, limits: EmbedLimits = DISCORD_LIMITS) -> Embed:
    """The embed cut down to Discord's limits: every text to its own limit (with an ellipsis), at most
    ``limits.fields`` fields, and the total within ``limits.total`` — the description gives way first,
    then fields are dropped from the end. Empty field names and values become ``—``."""
    title = truncate(embed.title, limits.title) if embed.title else None
    fields = [
        EmbedField(
            name=_non_blank(truncate(field.name, limits.field_name)),
            value=_non_blank(truncate(field.value, limits.field_value)),
            inline=field.inline,
        )
        for field in embed.fields[: limits.fields]
    ]
    footer = (
        EmbedFooter(text=truncate(embed.footer.text, limits.footer))
        if embed.footer and embed.footer.text.strip()
        else None
    )
    author = (
        EmbedAuthor(name=truncate(embed.author.name, limits.author_name))
        if embed.author and embed.author.name.strip()
        else None
    )
    fixed = (
        discord_length(title or "")
        + discord_length(footer.text if footer else "")
        + discord_length(author.name if author else "")
        + sum(_field_length(field) for field in fields)
    )
    while fields and fixed > limits.total:
        fixed -= _field_length(fields.pop())
    description = None
    if embed.description and embed.description.strip():
        room = min(limits.description, limits.total - fixed)
        description = truncate(embed.description, room) or None
    return Embed(
        title=title,
        description=description,
        color=embed.color,
        fields=fields,
        footer=footer,
        author=author,
        timestamp=embed.timestamp,
    )


def embed_length(embed: Embed) -> int:
    """The characters Discord counts against the total limit of an embed."""
    return (
        discord_length(embed.title or "")
        + discord_length(embed.description or "")
        + sum(_field_length(field) for field in embed.fields)
        + discord_length(embed.footer.text if embed.footer else "")
        + discord_length(embed.author.name if embed.author else "")
    )


def discord_username(name: str, limits: EmbedLimits = DISCORD_LIMITS) -> str | None:
    """The name to post under, or None to keep the webhook's own name: Discord refuses an empty name
    and names containing "discord" or "clyde" (the whole message would be rejected with a 400)."""
    name = truncate(name.strip(), limits.username)
    if not name or any(part in name.lower() for part in _FORBIDDEN_USERNAME_PARTS):
        return None
    return name


def discord_execute_url(url: str) -> str:
    """The webhook URL with ``wait=true`` (Discord then answers with the created message, so that a
    failure to post is reported instead of being dropped silently); other query parameters, such as
    ``thread_id``, are kept."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
    query.append(("wait", "true"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _merged_embed(event: JobMerged, public_url: str, when: float) -> Embed:
    redecoded = event.audio_redecoded_seconds
    share = f" ({100 * redecoded / event.duration_s:.0f} % of the audio)" if event.duration_s > 0 else ""
    preview = event.text_preview.strip()
    # Warnings go first: fit_embed drops fields from the end when the embed is too long.
    warnings = [
        EmbedField(
            name="Warnings",
            value="\n".join(f"⚠ {escape_markdown(w.message)} (`{w.code}`)" for w in event.warnings),
        )
    ]
    return Embed(
        title=f"Transcript ready · {event.job_id}",
        description=escape_markdown(preview) if preview else "*(no speech recognised)*",
        color=AMBER if event.warnings else GREEN,
        fields=[
            *(warnings if event.warnings else []),
            EmbedField(name="Duration", value=format_duration(event.duration_s), inline=True),
            EmbedField(name="Language", value=event.language or "unknown", inline=True),
            EmbedField(name="Words flagged", value=str(event.words_flagged), inline=True),
            EmbedField(name="Corrections accepted", value=str(event.corrections_accepted), inline=True),
            EmbedField(name="Corrections rejected", value=str(event.corrections_rejected), inline=True),
            EmbedField(name="Corrections unresolved", value=str(event.corrections_unresolved), inline=True),
            EmbedField(name="First pass", value=f"{event.first_pass_seconds:.1f} s", inline=True),
            EmbedField(name="Second pass", value=f"{event.second_pass_seconds:.1f} s", inline=True),
            EmbedField(name="Re-decoded", value=f"{redecoded:.1f} s{share}", inline=True),
            EmbedField(name="Transcript", value=transcript_url(public_url, event.job_id)),
        ],
        footer=EmbedFooter(text=f"relisten · job {event.job_id}"),
        timestamp=iso_timestamp(when),
    )


def _failed_embed(event: JobFailed, public_url: str, when: float) -> Embed:
    # Only the code: the message may carry a backend's own error text (hosts, paths, a remote
    # server's answer), which has no place in a chat channel. The job's page has the details.
    return Embed(
        title=f"Job failed · {event.job_id}",
        description=f"The job failed while {escape_markdown(event.stage)} ({escape_markdown(event.error.code)}); "
        "its page has the details.",
        color=RED,
        fields=[
            EmbedField(name="Stage", value=event.stage, inline=True),
            EmbedField(name="Error code", value=event.error.code, inline=True),
            EmbedField(name="Job", value=job_url(public_url, event.job_id)),
        ],
        footer=EmbedFooter(text=f"relisten · job {event.job_id}"),
        timestamp=iso_timestamp(when),
    )


def discord_message(event: Notice, *, username: str, public_url: str, now: float) -> DiscordMessage:
    """The Discord message announcing a finished job, within Discord's limits. ``now`` stands in for
    the event's time when the producer left it unset."""
    when = event.occurred_at or now
    if isinstance(event, JobMerged):
        embed = _merged_embed(event, public_url, when)
    else:
        embed = _failed_embed(event, public_url, when)
    return DiscordMessage(
        embeds=[fit_embed(embed)],
        allowed_mentions=AllowedMentions(),
        username=discord_username(username),
    )


# --------------------------------------------------------------------------------------------------
# Callbacks (Standard Webhooks)


SECRET_PREFIX = "whsec_"
CALLBACK_PREVIEW_MAX = 4096
"""The spec asks for small payloads; the full transcript is one GET away (``transcript_url``)."""


class CompletedData(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    status: str
    transcript_url: str
    language: str
    duration_s: float
    text_preview: str
    stats: TranscriptStats
    warnings: list[JobWarning] = msgspec.field(default_factory=list)
    """What the pipeline found doubtful about the transcript (``mostly_unsure``, ``possible_hallucination``)."""


class FailedData(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    status: str
    job_url: str
    stage: str
    error: ErrorInfo


class CallbackPayload(msgspec.Struct, frozen=True, kw_only=True):
    """The Standard Webhooks payload shape: ``type``, ``timestamp`` (of the event), ``data``."""

    type: str
    timestamp: str
    data: CompletedData | FailedData


def callback_payload(event: Notice, *, public_url: str, now: float) -> CallbackPayload:
    """The callback announcing a finished job; ``now`` stands in for an unset event time."""
    when = iso_timestamp(event.occurred_at or now)
    data: CompletedData | FailedData
    if isinstance(event, JobMerged):
        data = CompletedData(
            job_id=event.job_id,
            status="completed",
            transcript_url=transcript_url(public_url, event.job_id),
            language=event.language,
            duration_s=event.duration_s,
            text_preview=truncate(event.text_preview, CALLBACK_PREVIEW_MAX),
            stats=merged_stats(event),
            warnings=list(event.warnings),
        )
    else:
        data = FailedData(
            job_id=event.job_id,
            status="failed",
            job_url=job_url(public_url, event.job_id),
            stage=event.stage,
            error=event.error,
        )
    return CallbackPayload(type=callback_type(event), timestamp=when, data=data)


def callback_body(event: Notice, *, public_url: str, now: float) -> bytes:
    """The exact bytes sent (and signed): minified JSON of :func:`callback_payload`."""
    return msgspec.json.encode(callback_payload(event, public_url=public_url, now=now))


def signing_key(secret: str) -> bytes:
    """The HMAC key of a configured secret. ``whsec_`` + base64 (the spec's serialisation, padding
    optional) gives the decoded bytes; any other string is used as its UTF-8 bytes. Raises
    ``ValueError`` for an empty key or bad base64 (the secret itself is never put in the message)."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("webhook secret starts with 'whsec_' but the rest is not base64") from exc
    else:
        key = secret.encode()
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64(HMAC-SHA256(key, ``{msg_id}.{timestamp}.{body}``)), per Standard Webhooks."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_headers(msg_id: str, timestamp: int, body: bytes, key: bytes | None) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt; ``webhook-signature`` only when there is a key.
    ``timestamp`` is the attempt's time (unix seconds), so a late retry is not refused as a replay."""
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if key is not None:
        headers["webhook-signature"] = sign(key, msg_id, timestamp, body)
    return headers


# --------------------------------------------------------------------------------------------------
# Delivery verdicts


@dataclass(frozen=True)
class Delivered:
    status: int


@dataclass(frozen=True)
class RetryLater:
    delay_s: float
    reason: str


@dataclass(frozen=True)
class GiveUp:
    reason: str
    status: int | None = None


Verdict = Delivered | RetryLater | GiveUp


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def retry_after_s(headers: Mapping[str, str], body: bytes, now: float) -> float | None:
    """Seconds the server asked to wait, or None: the ``Retry-After`` header (delta-seconds, fractional
    ones accepted, or an HTTP date), else the ``retry_after`` of a JSON body (Discord's rate limits)."""
    asked = retry_after_seconds(_header(headers, "retry-after"), now)
    if asked is not None:
        return asked
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None
    if isinstance(parsed, dict):
        value = parsed.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return max(float(value), 0.0)
    return None


def _snippet(body: bytes, limit: int = 300) -> str:
    return truncate(body.decode("utf-8", errors="replace").strip(), limit)


def is_retryable(status: int) -> bool:
    """429 (rate limited), 408 (request timeout) and every 5xx may succeed later; any other non-2xx
    (3xx: redirects are not followed, 4xx: the request itself is wrong) will not."""
    return status in (408, 429) or 500 <= status <= 599


DISABLING_STATUSES: Final = frozenset({401, 404, 410})
"""The receiver says the destination is gone or not ours to call: stop calling it."""


@dataclass(frozen=True)
class Disable:
    """Give up on this notice and stop calling the destination (``status`` 401, 404 or 410)."""

    status: int
    reason: str


def parse_schedule(value: str) -> tuple[float, ...]:
    """``"5,30,120"`` -> ``(5.0, 30.0, 120.0)``; durations may end in ``s``, ``m`` or ``h``."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    delays = []
    for item in value.split(","):
        text = item.strip().lower()
        if not text:
            continue
        scale = units.get(text[-1], 1.0)
        number = float(text[:-1] if text[-1] in units else text)
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{item.strip()!r} is not a delay")
        delays.append(number * scale)
    return tuple(delays)


def judge_scheduled(
    status: int | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    failures_before: int,
    schedule: tuple[float, ...],
    max_retry_after_s: float,
    now: float,
    transport_error: str = "",
) -> Delivered | RetryLater | GiveUp | Disable:
    """What to do after one attempt on the durable schedule (``status`` None: no response).

    The attempt is number ``failures_before + 1``; after a failure the next comes ``schedule[n]``
    seconds later (the receiver's ``Retry-After`` instead, up to ``max_retry_after_s``), and once the
    schedule is used up the notice is given up. 401/404/410 disable the destination; other 4xx give up.
    """
    if status is not None and 200 <= status <= 299:
        return Delivered(status)
    if status is None:
        reason = transport_error or "no response"
    else:
        detail = _snippet(body)
        reason = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status in DISABLING_STATUSES:
            return Disable(status, reason)
        if not is_retryable(status):
            return GiveUp(reason, status)
    failures = failures_before + 1
    if failures > len(schedule):
        return GiveUp(f"{reason} (attempt {failures}, the schedule is used up)", status)
    delay = schedule[failures - 1]
    asked = retry_after_s(headers, body, now) if status is not None else None
    if asked is not None:
        delay = min(asked, max_retry_after_s)
    return RetryLater(delay, reason)
