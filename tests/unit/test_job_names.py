"""Every service names a job's objects and keys with the functions deletion uses
(``relisten_contracts.names``; the pipeline's handlers call them directly), so that deleting a job
cannot miss what a service stored."""

from __future__ import annotations

import pytest
from relisten_contracts import (
    audio_object,
    clip_object,
    clip_result_key,
    first_pass_object,
    job_token,
    notify_key_prefix,
    original_object,
    plan_object,
    transcript_object,
)
from relisten_ingest.adapters import audio_name, original_name
from relisten_notifier.domain import latch_key, safe_token

JOB_IDS = ["0123456789abcdef0123456789abcdef", "with.dot", "weird/ü id"]


@pytest.mark.parametrize("job_id", JOB_IDS)
def test_the_services_use_the_contracts_names(job_id: str) -> None:
    assert original_name(job_id) == original_object(job_id)
    assert audio_name(job_id) == audio_object(job_id)


@pytest.mark.parametrize("job_id", JOB_IDS)
def test_every_delivery_latch_starts_with_the_jobs_notify_prefix(job_id: str) -> None:
    assert safe_token(job_id) == job_token(job_id)
    for kind in ("merged", "failed"):
        for target in ("discord", "callback"):
            key = latch_key(job_id, kind, target)
            assert key.startswith(notify_key_prefix(job_id))


def test_objects_of_a_job_share_its_prefix_and_no_other_jobs() -> None:
    names = [
        original_object("a"),
        audio_object("a"),
        clip_object("a", 0),
        first_pass_object("a"),
        plan_object("a"),
        transcript_object("a"),
    ]
    assert all(name.startswith("a/") for name in names)
    assert not clip_result_key("ab", 1).startswith("a.")
