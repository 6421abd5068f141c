"""A transcript's warnings (wrong language, mostly unsure, ...) reach both notifications."""

from __future__ import annotations

import msgspec
from relisten_contracts import JobMerged, JobWarning
from relisten_notifier.domain import callback_payload, discord_message

from relisten.testing import job_merged

WARNING = JobWarning(
    code="language_mismatch", message="the job asked for 'en' but the speech sounds like 'es'"
)


def merged(warnings: list[JobWarning]) -> JobMerged:
    return job_merged(
        "job1", text_preview="thank you very much", words_flagged=3, first_pass_seconds=1.0, warnings=warnings
    )


def test_discord_lists_the_warnings() -> None:
    embed = discord_message(merged([WARNING]), username="relisten", public_url="http://x", now=1.0).embeds[0]
    field = next(f for f in embed.fields if f.name == "Warnings")
    assert "`language_mismatch`" in field.value and "'es'" in field.value
    quiet = discord_message(merged([]), username="relisten", public_url="http://x", now=1.0).embeds[0]
    assert all(f.name != "Warnings" for f in quiet.fields)


def test_the_callback_carries_the_warnings() -> None:
    body = msgspec.to_builtins(callback_payload(merged([WARNING]), public_url="http://x", now=1.0))
    assert body["data"]["warnings"] == [{"code": "language_mismatch", "message": WARNING.message}]
