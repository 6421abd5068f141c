"""Pure notifier logic: Discord limits, callback bodies, Standard Webhooks signatures, retry verdicts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_contracts import ErrorInfo, JobFailed, JobMerged, JobOptions, JobWarning
from relisten_notifier.domain import (
    AMBER,
    DISCORD_LIMITS,
    ELLIPSIS,
    GREEN,
    RED,
    Delivered,
    Disable,
    Embed,
    EmbedAuthor,
    EmbedField,
    EmbedFooter,
    GiveUp,
    RetryLater,
    callback_body,
    destination_key,
    discord_execute_url,
    discord_length,
    discord_message,
    discord_username,
    embed_length,
    escape_markdown,
    fit_embed,
    judge_scheduled,
    latch_key,
    parse_schedule,
    retry_after_s,
    safe_token,
    sign,
    signing_key,
    truncate,
    webhook_headers,
    webhook_id,
)

KV_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")
NOW = 1_700_000_000.0


def merged(job_id: str = "job1", preview: str = "hello world", **changes: object) -> JobMerged:
    fields: dict[str, object] = {
        "job_id": job_id,
        "transcript_ref": f"{job_id}/transcript.json",
        "language": "en",
        "duration_s": 125.0,
        "text_preview": preview,
        "corrections_accepted": 3,
        "corrections_rejected": 1,
        "corrections_unresolved": 2,
        "words_flagged": 17,
        "first_pass_seconds": 4.25,
        "second_pass_seconds": 3.5,
        "audio_redecoded_seconds": 25.0,
        "occurred_at": NOW,
        "options": JobOptions(callback_url="http://127.0.0.1:1/cb"),
    }
    fields.update(changes)
    return JobMerged(**fields)  # type: ignore[arg-type]


def failed(job_id: str = "job1", message: str = "decoder exploded") -> JobFailed:
    return JobFailed(
        job_id=job_id,
        stage="transcribing",
        error=ErrorInfo(code="asr_failed", message=message),
        occurred_at=NOW,
    )


def assert_within_discord_limits(embed: Embed) -> None:
    limits = DISCORD_LIMITS
    assert discord_length(embed.title or "") <= limits.title
    assert discord_length(embed.description or "") <= limits.description
    assert len(embed.fields) <= limits.fields
    for field in embed.fields:
        assert 0 < discord_length(field.name) <= limits.field_name
        assert 0 < discord_length(field.value) <= limits.field_value
    assert discord_length(embed.footer.text if embed.footer else "") <= limits.footer
    assert discord_length(embed.author.name if embed.author else "") <= limits.author_name
    total = sum(
        discord_length(text)
        for text in [
            embed.title or "",
            embed.description or "",
            embed.footer.text if embed.footer else "",
            embed.author.name if embed.author else "",
            *(f.name for f in embed.fields),
            *(f.value for f in embed.fields),
        ]
    )
    assert total <= limits.total


# --- truncation and Discord limits ------------------------------------------------------------------


def test_truncate_leaves_fitting_text_alone() -> None:
    assert truncate("abc", 3) == "abc"


def test_truncate_cuts_with_an_ellipsis_within_the_limit() -> None:
    cut = truncate("abcdefghij", 5)
    assert cut == "abcd" + ELLIPSIS
    assert discord_length(cut) == 5


def test_truncate_counts_astral_characters_as_two_and_never_splits_them() -> None:
    text = "😀" * 10
    cut = truncate(text, 6)
    assert cut == "😀😀" + ELLIPSIS
    assert discord_length(cut) == 5
    cut.encode("utf-8")  # a lone surrogate would raise here


def test_truncate_to_nothing() -> None:
    assert truncate("abc", 0) == ""


def test_fit_embed_cuts_every_over_long_part() -> None:
    embed = Embed(
        title="t" * 1000,
        description="d" * 10_000,
        fields=[EmbedField(name="n" * 500, value="v" * 5000) for _ in range(40)],
        footer=EmbedFooter(text="f" * 5000),
        author=EmbedAuthor(name="a" * 1000),
    )
    fitted = fit_embed(embed)
    assert_within_discord_limits(fitted)
    assert fitted.title is not None and fitted.title.endswith(ELLIPSIS)
    assert discord_length(fitted.title) == DISCORD_LIMITS.title
    assert fitted.footer is not None and discord_length(fitted.footer.text) == DISCORD_LIMITS.footer
    assert fitted.author is not None and discord_length(fitted.author.name) == DISCORD_LIMITS.author_name
    # 256 + 2048 + 256 leave 3440 for fields: two whole (1280 each), and no room for a description.
    assert len(fitted.fields) == 2
    assert fitted.description is not None
    assert embed_length(fitted) == DISCORD_LIMITS.total


def test_fit_embed_gives_the_description_the_room_left() -> None:
    embed = Embed(title="short", description="x" * 5000, fields=[EmbedField(name="a", value="b" * 500)] * 2)
    fitted = fit_embed(embed)
    assert_within_discord_limits(fitted)
    assert fitted.description == "x" * (DISCORD_LIMITS.description - 1) + ELLIPSIS
    assert len(fitted.fields) == 2


def test_fit_embed_shrinks_the_description_to_keep_the_total() -> None:
    fields = [EmbedField(name="n" * 200, value="v" * 1000) for _ in range(4)]
    fitted = fit_embed(Embed(title="t", description="x" * 4096, fields=fields))
    assert_within_discord_limits(fitted)
    assert len(fitted.fields) == 4
    assert fitted.description is not None
    assert discord_length(fitted.description) == 6000 - 1 - 4 * 1200


def test_fit_embed_replaces_empty_field_text() -> None:
    fitted = fit_embed(Embed(title="t", fields=[EmbedField(name="", value="  ")]))
    assert fitted.fields[0].name.strip() and fitted.fields[0].value.strip()


@settings(max_examples=60, deadline=None)
@given(
    title=st.text(max_size=400),
    description=st.text(max_size=7000),
    footer=st.text(max_size=2500),
    fields=st.lists(st.tuples(st.text(max_size=300), st.text(max_size=1200)), max_size=30),
)
def test_fit_embed_always_within_limits(
    title: str, description: str, footer: str, fields: list[tuple[str, str]]
) -> None:
    embed = Embed(
        title=title,
        description=description,
        footer=EmbedFooter(text=footer),
        fields=[EmbedField(name=n, value=v) for n, v in fields],
    )
    assert_within_discord_limits(fit_embed(embed))


def test_merged_message_is_green_with_the_stats_and_within_limits() -> None:
    message = discord_message(
        merged(preview="word " * 3000), username="relisten", public_url="https://r.example/", now=0
    )
    body = json.loads(msgspec.json.encode(message))
    assert body["username"] == "relisten"
    assert body["allowed_mentions"] == {"parse": []}
    (embed,) = message.embeds
    assert_within_discord_limits(embed)
    assert embed.color == GREEN
    assert embed.description is not None and embed.description.endswith(ELLIPSIS)
    # The cut falls after a space, which is dropped before the ellipsis.
    assert DISCORD_LIMITS.description - 1 <= discord_length(embed.description) <= DISCORD_LIMITS.description
    values = {field.name: field.value for field in embed.fields}
    assert values["Duration"] == "2 min 05 s"
    assert values["Language"] == "en"
    assert values["Corrections accepted"] == "3"
    assert values["Corrections rejected"] == "1"
    assert values["Corrections unresolved"] == "2"
    assert values["Words flagged"] == "17"
    assert values["First pass"] == "4.2 s"
    assert values["Second pass"] == "3.5 s"
    assert values["Re-decoded"].startswith("25.0 s (20 %")
    assert values["Transcript"] == "https://r.example/v1/jobs/job1/transcript"
    assert embed.timestamp == "2023-11-14T22:13:20.000Z"
    assert embed.footer is not None and "job1" in embed.footer.text


UNSURE = JobWarning(code="mostly_unsure", message="9 of 10 words are below the confidence threshold 0.6")
INVENTED = JobWarning(code="possible_hallucination", message="2 word(s) removed: stock phrase 'Thank you.'")


def test_merged_message_with_warnings_is_amber_and_says_them_first() -> None:
    message = discord_message(
        merged(preview="word " * 3000, warnings=[UNSURE, INVENTED]),
        username="r",
        public_url="http://h",
        now=0,
    )
    (embed,) = message.embeds
    assert_within_discord_limits(embed)
    assert embed.color == AMBER
    assert embed.fields[0].name == "Warnings"
    # codes are shown as code (inside backticks markdown is not interpreted, so not escaped)
    assert "`mostly_unsure`" in embed.fields[0].value and "`possible_hallucination`" in embed.fields[0].value
    assert "9 of 10 words" in embed.fields[0].value and "stock phrase" in embed.fields[0].value
    assert {field.name for field in embed.fields} >= {"Warnings", "Transcript"}


def test_merged_message_without_warnings_has_no_warnings_field() -> None:
    (embed,) = discord_message(merged(), username="r", public_url="http://h", now=0).embeds
    assert "Warnings" not in {field.name for field in embed.fields}


def test_completed_callback_carries_the_warnings() -> None:
    body = json.loads(callback_body(merged(warnings=[UNSURE]), public_url="https://r.example", now=0))
    assert body["data"]["warnings"] == [{"code": "mostly_unsure", "message": UNSURE.message}]
    assert (
        json.loads(callback_body(merged(), public_url="https://r.example", now=0))["data"]["warnings"] == []
    )


def test_failed_message_is_red_with_stage_and_code() -> None:
    message = discord_message(failed(message="e" * 9000), username="x" * 200, public_url="http://h", now=0)
    (embed,) = message.embeds
    assert_within_discord_limits(embed)
    assert embed.color == RED
    values = {field.name: field.value for field in embed.fields}
    assert values["Stage"] == "transcribing"
    assert values["Error code"] == "asr_failed"
    assert message.username is not None and discord_length(message.username) == DISCORD_LIMITS.username


def test_unset_event_time_falls_back_to_now() -> None:
    message = discord_message(merged(occurred_at=0.0), username="r", public_url="http://h", now=NOW + 1)
    assert message.embeds[0].timestamp == "2023-11-14T22:13:21.000Z"


def test_transcript_text_cannot_format_or_ping() -> None:
    assert escape_markdown("**bold** _it_ `code` > quote") == r"\*\*bold\*\* \_it\_ \`code\` \> quote"


@pytest.mark.parametrize("name", ["", "   ", "My Discord bot", "clyde"])
def test_usernames_discord_refuses_fall_back_to_the_webhook_name(name: str) -> None:
    assert discord_username(name) is None


def test_execute_url_adds_wait_and_keeps_other_parameters() -> None:
    url = discord_execute_url("https://discord.com/api/webhooks/1/tok?thread_id=42&wait=false")
    parts = urlsplit(url)
    assert parts.path == "/api/webhooks/1/tok"
    assert parse_qs(parts.query) == {"thread_id": ["42"], "wait": ["true"]}


# --- identities -------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["job1", "a.b", "with space", "ünï/cødé", "=abc", "x" * 100])
def test_latch_keys_are_valid_kv_keys(job_id: str) -> None:
    key = latch_key(job_id, "merged", "discord")
    assert KV_KEY.fullmatch(key)
    assert key.endswith(".merged.discord")
    assert key.count(".") == 2


def test_distinct_job_ids_never_share_a_token() -> None:
    ids = {"a.b", "a_b", "a-b", "ab", safe_token("a.b"), safe_token(safe_token("a.b"))}
    assert len(ids) == 6
    assert len({safe_token(i) for i in ids}) == len(ids)


def test_webhook_id_is_deterministic_and_dot_free() -> None:
    assert webhook_id(merged("j.1")) == webhook_id(merged("j.1", preview="other"))
    assert "." not in webhook_id(merged("j.1"))
    assert webhook_id(merged("job1")) == "msg_job1_completed"
    assert webhook_id(failed("job1")) == "msg_job1_failed"


# --- callbacks and Standard Webhooks signatures ----------------------------------------------------


def test_completed_callback_body() -> None:
    body = json.loads(callback_body(merged(), public_url="https://r.example", now=0))
    assert body["type"] == "job.completed"
    assert body["timestamp"] == "2023-11-14T22:13:20.000Z"
    data = body["data"]
    assert data["job_id"] == "job1"
    assert data["status"] == "completed"
    assert data["transcript_url"] == "https://r.example/v1/jobs/job1/transcript"
    assert data["stats"]["corrections_accepted"] == 3
    assert data["stats"]["audio_redecoded_seconds"] == 25.0


def test_failed_callback_body() -> None:
    body = json.loads(callback_body(failed(), public_url="https://r.example", now=0))
    assert body["type"] == "job.failed"
    assert body["data"]["status"] == "failed"
    assert body["data"]["stage"] == "transcribing"
    assert body["data"]["error"] == {"code": "asr_failed", "message": "decoder exploded"}


def independent_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Recomputed from the spec's text, not from the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_signature_matches_the_reference_test_vector() -> None:
    # The vector of the standard-webhooks reference libraries' own test suite.
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_verify_independently() -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    body = callback_body(merged(), public_url="http://h", now=0)
    headers = webhook_headers(webhook_id(merged()), 1_700_000_123, body, signing_key(secret))
    assert headers["webhook-id"] == "msg_job1_completed"
    assert headers["webhook-timestamp"] == "1700000123"
    assert headers["content-type"] == "application/json"
    expected = independent_signature(secret, headers["webhook-id"], headers["webhook-timestamp"], body)
    assert hmac.compare_digest(headers["webhook-signature"], expected)
    tampered = independent_signature(secret, headers["webhook-id"], headers["webhook-timestamp"], body + b" ")
    assert headers["webhook-signature"] != tampered


def test_unsigned_headers_without_a_key() -> None:
    headers = webhook_headers("msg_x", 1, b"{}", None)
    assert "webhook-signature" not in headers
    assert headers["webhook-id"] == "msg_x"


def test_signing_keys() -> None:
    assert signing_key("whsec_" + base64.b64encode(b"k" * 24).decode().rstrip("=")) == b"k" * 24
    assert signing_key("plain-secret") == b"plain-secret"
    with pytest.raises(ValueError):
        signing_key("whsec_not base64!")
    with pytest.raises(ValueError):
        signing_key("whsec_")


# --- delivery verdicts -------------------------------------------------------------------------------

SCHEDULE = (5.0, 30.0, 120.0)


def judge(
    status: int | None, headers: dict[str, str] | None = None, body: bytes = b"", failures: int = 0
) -> Any:
    return judge_scheduled(
        status,
        headers or {},
        body,
        failures_before=failures,
        schedule=SCHEDULE,
        max_retry_after_s=600.0,
        now=NOW,
        transport_error="ConnectError" if status is None else "",
    )


@pytest.mark.parametrize("status", [200, 201, 204])
def test_2xx_is_delivered(status: int) -> None:
    assert judge(status) == Delivered(status)


@pytest.mark.parametrize("status", [401, 404, 410])
def test_a_destination_that_is_gone_or_refuses_us_is_disabled(status: int) -> None:
    verdict = judge(status, body=b'{"message": "Unknown Webhook"}')
    assert isinstance(verdict, Disable) and verdict.status == status
    assert "Unknown Webhook" in verdict.reason


@pytest.mark.parametrize("status", [400, 403, 413, 301])
def test_other_client_errors_give_up_at_once(status: int) -> None:
    verdict = judge(status, body=b'{"message": "nope"}')
    assert isinstance(verdict, GiveUp) and verdict.status == status


@pytest.mark.parametrize("status", [408, 500, 502, 503, None])
def test_passing_failures_follow_the_schedule_then_give_up(status: int | None) -> None:
    delays = [judge(status, failures=n) for n in range(3)]
    assert [d.delay_s for d in delays] == [5.0, 30.0, 120.0]
    assert all(isinstance(d, RetryLater) for d in delays)
    assert isinstance(judge(status, failures=3), GiveUp)


def test_429_waits_as_told_by_the_header_or_discords_body_up_to_the_cap() -> None:
    assert judge(429, {"Retry-After": "7"}) == RetryLater(7.0, "HTTP 429")
    body = b'{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}'
    verdict = judge(429, {}, body)
    assert isinstance(verdict, RetryLater) and verdict.delay_s == 0.25
    capped = judge(429, {"Retry-After": "86400"})
    assert isinstance(capped, RetryLater) and capped.delay_s == 600.0


def test_retry_after_as_an_http_date() -> None:
    assert retry_after_s({"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"}, b"", NOW) == 10.0


def test_unparseable_retry_after_falls_back_to_the_schedule() -> None:
    verdict = judge(429, {"Retry-After": "soon"}, b"<html>")
    assert isinstance(verdict, RetryLater) and verdict.delay_s == 5.0


def test_schedules_parse_with_units() -> None:
    assert parse_schedule("5s, 30s,2m,10m,1h,3h,8h") == (5.0, 30.0, 120.0, 600.0, 3600.0, 10800.0, 28800.0)
    assert parse_schedule("0.5,1") == (0.5, 1.0)
    with pytest.raises(ValueError):
        parse_schedule("5,-1")


def test_discord_never_sees_a_backends_error_text() -> None:
    secret = "upstream said: 500 at http://10.0.0.7:9000/v1 token=abc"
    message = discord_message(failed(message=secret), username="r", public_url="http://h", now=0)
    text = msgspec.json.encode(message).decode()
    assert "10.0.0.7" not in text and "token=abc" not in text
    assert "asr_failed" in text


def test_each_run_of_a_retried_job_is_announced_under_its_own_keys() -> None:
    first = failed()
    second = msgspec.structs.replace(first, attempt=1)
    assert latch_key("job1", "failed", "discord") == "job1.failed.discord"
    assert latch_key("job1", "failed", "discord", 1) == "job1.failed.discord.a1"
    assert webhook_id(first) == "msg_job1_failed"
    assert webhook_id(second) == "msg_job1_failed_a1"


def test_disabled_destination_keys_hide_the_url() -> None:
    key = destination_key("callback", "https://example.com/hook?token=secret")
    assert key.startswith("disabled.callback.") and "secret" not in key
    assert key != destination_key("callback", "https://example.com/other")
    assert destination_key("discord", "https://discord.com/api/webhooks/1/t") == "disabled.discord"
