"""The declared flow (:mod:`relisten_contracts.flow`, from which the AsyncAPI document, the README's flow
table and the health check are generated) is what the services really run: each service's worker is
built as ``relisten worker`` builds it (remote engines, so no model loads; nothing connects before
``start``) and the steps it binds are read."""

from __future__ import annotations

import pytest
from relisten_asr.app import build_worker as build_asr
from relisten_asr.settings import AsrSettings
from relisten_clipper.app import build_worker as build_clipper
from relisten_clipper.settings import ClipperSettings
from relisten_contracts import JobFailed, Subject, flow, subject_for
from relisten_corrector.app import build_worker as build_corrector
from relisten_corrector.settings import CorrectorSettings
from relisten_ingest.asyncapi import build_asyncapi
from relisten_ingest.handlers import register_projector
from relisten_ingest.settings import IngestSettings
from relisten_merger.app import build_worker as build_merger
from relisten_merger.settings import MergerSettings
from relisten_notifier.app import build_worker as build_notifier
from relisten_notifier.settings import NotifierSettings
from relisten_runtime.worker import Worker

NOWHERE = "nats://127.0.0.1:9"
"""Never connected to: the workers are only built, not started."""
REMOTE = "http://127.0.0.1:9"


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list[Worker]:
    monkeypatch.delenv("RELISTEN_PORT", raising=False)
    monkeypatch.delenv("RELISTEN_INGEST_PORT", raising=False)
    ingest = Worker("ingest", IngestSettings(nats_url=NOWHERE))
    register_projector(ingest)
    return [
        ingest,
        build_asr(AsrSettings(nats_url=NOWHERE, engine="openai", base_url=REMOTE, multilingual_model="")),
        build_clipper(ClipperSettings(nats_url=NOWHERE)),
        build_corrector(CorrectorSettings(nats_url=NOWHERE, backend="openai", base_url=REMOTE)),
        build_merger(MergerSettings(nats_url=NOWHERE)),
        build_notifier(NotifierSettings(nats_url=NOWHERE)),
    ]


def test_every_service_binds_exactly_its_declared_steps(workers: list[Worker]) -> None:
    bound = [step.spec for worker in workers for step in worker.steps]
    assert sorted(bound, key=lambda spec: spec.durable) == sorted(flow.STEPS, key=lambda spec: spec.durable)
    for worker in workers:
        assert tuple(step.spec for step in worker.steps) == flow.steps_of(worker.name)
        assert [consumer.durable for consumer in worker.consumers] == [
            spec.durable for spec in flow.steps_of(worker.name)
        ]
    # Durable names are unique across services: two services on one durable would split its events.
    durables = [spec.durable for spec in flow.STEPS]
    assert len(durables) == len(set(durables))


def test_the_services_that_fail_jobs_are_the_pipeline_stages() -> None:
    failing = {spec.service for spec in flow.STEPS if spec.fails_jobs}
    assert failing == {"asr", "clipper", "corrector", "merger"}
    assert set(flow.senders(JobFailed)) == failing | {"ingest"}  # ingest: its watchdog
    assert all(spec.max_deliver == flow.FOREVER for spec in flow.STEPS if not spec.fails_jobs)


def test_every_consumed_event_has_a_sender_and_every_published_one_a_receiver() -> None:
    for spec in flow.STEPS:
        if spec.subject != flow.EVERY_EVENT:
            assert flow.senders(spec.consumes), spec.durable
            assert subject_for(str(spec.consumes.__struct_config__.tag)) == spec.subject
        for event in spec.publishes:
            assert flow.receivers(subject_for(str(event.__struct_config__.tag))), event


def test_document_operations_follow_the_steps() -> None:
    operations = build_asyncapi(version="0", nats_url=NOWHERE, stream="RELISTEN")["operations"]
    receiving = {name for name, operation in operations.items() if operation["action"] == "receive"}
    expected = set()
    for spec in flow.STEPS:
        subjects = list(Subject) if spec.subject == flow.EVERY_EVENT else [Subject(spec.subject)]
        for subject in subjects:
            name = f"{spec.service}.receive.{subject.name.lower()}"
            expected.add(name)
            assert operations[name]["description"] == f"Durable pull consumer {spec.durable!r}."
    assert receiving == expected
    sending = {name for name, operation in operations.items() if operation["action"] == "send"}
    assert "asr.send.words_scored" in sending and "ingest.send.words_scored" in sending  # a retry
    assert "notifier.send.job_failed" not in sending
