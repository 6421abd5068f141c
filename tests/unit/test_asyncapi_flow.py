"""The AsyncAPI document's flow (ingest's hand-kept ``RECEIVERS``/``SENDERS``) is what the services
really register: each service's worker is built as ``relisten worker`` builds it (remote engines, so
no model loads; nothing connects before ``start``) and its ``Worker.consume`` registrations are read."""

from __future__ import annotations

import pytest
from relisten_asr.app import build_worker as build_asr
from relisten_asr.settings import AsrSettings
from relisten_clipper.app import build_worker as build_clipper
from relisten_clipper.settings import ClipperSettings
from relisten_contracts import Subject
from relisten_corrector.app import build_worker as build_corrector
from relisten_corrector.settings import CorrectorSettings
from relisten_ingest.asyncapi import RECEIVERS, SENDERS, VIEW_CONSUMER, build_asyncapi
from relisten_ingest.handlers import VIEW_SUBJECT, register_projector
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
    ingest = Worker("ingest", IngestSettings(nats_url=NOWHERE), fails_jobs=False)
    register_projector(ingest)
    return [
        ingest,
        build_asr(AsrSettings(nats_url=NOWHERE, engine="openai", base_url=REMOTE, multilingual_model="")),
        build_clipper(ClipperSettings(nats_url=NOWHERE)),
        build_corrector(CorrectorSettings(nats_url=NOWHERE, backend="openai", base_url=REMOTE)),
        build_merger(MergerSettings(nats_url=NOWHERE)),
        build_notifier(NotifierSettings(nats_url=NOWHERE)),
    ]


def test_receivers_are_the_registered_consumers(workers: list[Worker]) -> None:
    registered = {
        (spec.subject, worker.name, spec.durable) for worker in workers for spec in worker.consumers
    }
    documented = {
        (str(subject), service, durable)
        for subject, receivers in RECEIVERS.items()
        for service, durable in receivers
    }
    documented.add((VIEW_SUBJECT, *VIEW_CONSUMER))
    assert registered == documented
    # Durable names are unique across services: two services on one durable would split its events.
    durables = [spec.durable for worker in workers for spec in worker.consumers]
    assert len(durables) == len(set(durables))


def test_services_that_fail_jobs_are_documented_senders_of_job_failed(workers: list[Worker]) -> None:
    failing = {worker.name for worker in workers if worker.fails_jobs and worker.consumers}
    assert failing == {"asr", "clipper", "corrector", "merger"}
    assert failing <= set(SENDERS[Subject.JOB_FAILED])
    assert "notifier" not in SENDERS[Subject.JOB_FAILED]


def test_every_consumed_subject_has_a_sender(workers: list[Worker]) -> None:
    consumed = {spec.subject for worker in workers for spec in worker.consumers} - {VIEW_SUBJECT}
    assert consumed
    for subject in consumed:
        assert SENDERS[Subject(subject)], subject


def test_document_operations_follow_the_registrations(workers: list[Worker]) -> None:
    operations = build_asyncapi(version="0", nats_url=NOWHERE, stream="RELISTEN")["operations"]
    for worker in workers:
        for spec in worker.consumers:
            if spec.subject == VIEW_SUBJECT:
                continue
            operation = operations[f"{worker.name}.receive.{Subject(spec.subject).name.lower()}"]
            assert operation["description"] == f"Durable pull consumer {spec.durable!r}."
