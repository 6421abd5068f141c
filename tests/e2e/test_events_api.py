"""The live event stream end to end: a real recording through the real services, followed over
Server-Sent Events from the moment it is accepted; then the metrics it left behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relisten.services import SERVICES
from relisten.stack import Stack, server_sent_events

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

API_KEY = "e2e-events-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
IRON = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "ls-test-other-1688-142285-0000.flac"
"""15 s of LibriSpeech test-other: hard enough that the first pass is unsure of some words."""


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(
        nats_url, tmp_path_factory.mktemp("stack"), extra_env={"RELISTEN_INGEST_API_KEYS": API_KEY}
    ) as running:
        running.start(SERVICES)
        yield running


def follow(stack: Stack, job_id: str) -> list[tuple[str, Any]]:
    """Every event of the job's stream until it ends, authenticated the way a browser's EventSource
    must be (``?access_token=``)."""
    with httpx.stream(
        "GET",
        f"{stack.base_url}/v1/jobs/{job_id}/events",
        params={"access_token": API_KEY},
        timeout=httpx.Timeout(30, read=300),
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [(name, json.loads(data)) for name, data in server_sent_events(response.iter_lines())]


def test_a_recording_refines_itself_live(stack: Stack) -> None:
    submitted = httpx.post(
        f"{stack.base_url}/v1/jobs",
        files={"file": (IRON.name, IRON.read_bytes(), "audio/flac")},
        headers=AUTH,
        timeout=60,
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    events = follow(stack, job_id)
    names = [name for name, _ in events]
    print(f"\nevents of {job_id}: {names}")
    assert names[0] == "state" and events[0][1]["id"] == job_id
    assert names[-1] == "completed", stack.logs()
    assert names.count("first_pass") == 1
    assert names.index("first_pass") < names.index("completed")
    first_pass = events[names.index("first_pass")][1]
    assert first_pass["language"] == "en" and first_pass["duration_s"] == pytest.approx(15.0, abs=0.1)
    assert first_pass["words"] and all(0 <= w["probability"] <= 1 for w in first_pass["words"])
    statuses = [data["status"] for name, data in events if name == "status"]
    assert "correcting" in statuses or "merging" in statuses
    progress = [data["progress"] for name, data in events if name == "status"]
    assert progress == sorted(progress)

    corrections = [data for name, data in events if name == "correction"]
    assert corrections, "15 s of test-other should have a doubtful stretch"
    for correction in corrections:
        assert correction["status"] in ("accepted", "rejected", "unresolved")
        assert correction["start"] <= correction["end"]
        assert all(
            correction["start"] <= (w["start"] + w["end"]) / 2 <= correction["end"]
            for w in correction["words"]
        )
    clips = [data for name, data in events if name == "clip"]
    if clips:
        assert {c["index"] for c in clips} == set(range(clips[0]["count"]))

    completed = events[-1][1]
    assert completed["transcript_url"] == f"/v1/jobs/{job_id}/transcript"
    assert completed["stats"]["words_flagged"] > 0
    transcript = httpx.get(f"{stack.base_url}{completed['transcript_url']}", headers=AUTH, timeout=30).json()
    assert len(transcript["corrections"]) == len(corrections)

    # A client that arrives after the end gets the same story at once.
    late = follow(stack, job_id)
    assert [name for name, _ in late] == [
        "state",
        "first_pass",
        *["correction"] * len(corrections),
        "completed",
    ]


def test_metrics_and_asyncapi_stay_open(stack: Stack) -> None:
    metrics = httpx.get(f"{stack.base_url}/metrics", timeout=30)
    assert metrics.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.text)
        for s in family.samples
    }
    consumers = {dict(labels).get("consumer") for name, labels in samples if name == "relisten_queue_depth"}
    assert {"asr", "clipper", "corrector", "ingest-view"} <= consumers
    assert ("relisten_jobs", (("status", "queued"),)) in samples
    assert samples[("relisten_job_transitions_total", (("status", "completed"),))] >= 1
    assert samples[("relisten_audio_processed_seconds_total", ())] >= 15.0
    asyncapi = httpx.get(f"{stack.base_url}/asyncapi.json", timeout=30).json()
    assert asyncapi["channels"]["job_merged"]["address"] == "relisten.job.merged"
    assert httpx.get(f"{stack.base_url}/v1/jobs", timeout=30).status_code == 401
