"""The pipeline's flow as data: every durable consumer (a *step*) of every service, what it consumes and
what it publishes, and what ingest publishes outside any step.

Pure declarations, no handler and no I/O, so that anything may import them without pulling a model or a
broker in: each service binds its handlers to its own steps (``Worker.step`` in ``relisten_runtime``),
and the AsyncAPI document, the README's flow table and the health check are generated from this same
list. A step's handler receives its decoded ``consumes`` event and returns events of its ``publishes``
types (the runtime refuses any other).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from relisten_contracts.events import (
    ClipCorrected,
    ClipsReady,
    Event,
    JobCreated,
    JobDeleted,
    JobFailed,
    JobMerged,
    JobProgress,
    JobRetried,
    WordsScored,
)
from relisten_contracts.names import STREAM_SUBJECTS, Subject

E = TypeVar("E", bound=Event, covariant=True)

FOREVER: Final = -1
"""``max_deliver`` of a step that must never give up (the job view projector, the notifier)."""

EVERY_EVENT: Final = STREAM_SUBJECTS[0]
"""The subject filter of a step that reads every pipeline event (the job view projector)."""


@dataclass(frozen=True)
class StepSpec(Generic[E]):
    """One durable pull consumer on the stream, shared by every replica of its service."""

    service: str
    stage: str
    """The stage named in ``job.failed`` and the logs when this step gives up."""
    subject: str
    """The subject consumed (:class:`Subject`, or :data:`EVERY_EVENT`)."""
    durable: str
    """The durable consumer's name: unique across services (two services on one durable would split
    its events between them)."""
    consumes: type[E]
    """The event type the handler receives; anything else on the subject is rejected."""
    publishes: tuple[type[Event], ...]
    """The event types the handler may return or publish (``job.failed`` is the runtime's own)."""
    summary: str
    max_deliver: int | None = None
    """Deliveries before the job is failed; None: ``RELISTEN_MAX_DELIVER``; :data:`FOREVER`: never."""
    fails_jobs: bool = True
    """Whether giving up publishes ``job.failed``; False for steps that act after a job is terminal or
    only record what happened (they log and ack instead)."""
    publishes_failure: tuple[type[Event], ...] = field(init=False)

    def __post_init__(self) -> None:
        failure: tuple[type[Event], ...] = (JobFailed,) if self.fails_jobs else ()
        object.__setattr__(self, "publishes_failure", failure)


TRANSCRIBING: Final = StepSpec(
    service="asr",
    stage="transcribing",
    subject=Subject.JOB_CREATED,
    durable="asr",
    consumes=JobCreated,
    publishes=(JobProgress, WordsScored),
    summary="first pass (language identification, words with their confidence)",
)
CLIPPING: Final = StepSpec(
    service="clipper",
    stage="clipping",
    subject=Subject.WORDS_SCORED,
    durable="clipper",
    consumes=WordsScored,
    publishes=(ClipsReady,),
    summary="flags doubtful words, plans windows, cuts sample-exact clips",
)
CORRECTING: Final = StepSpec(
    service="corrector",
    stage="correcting",
    subject=Subject.CLIPS_READY,
    durable="corrector",
    consumes=ClipsReady,
    publishes=(JobProgress, ClipCorrected),
    summary="second pass on every clip, one answer per clip",
)
MERGING_PLANS: Final = StepSpec(
    service="merger",
    stage="merging",
    subject=Subject.CLIPS_READY,
    durable="merger-plans",
    consumes=ClipsReady,
    publishes=(JobProgress, JobMerged),
    summary="merges at once a job with nothing to re-listen to",
)
MERGING_CLIPS: Final = StepSpec(
    service="merger",
    stage="merging",
    subject=Subject.CLIP_CORRECTED,
    durable="merger-clips",
    consumes=ClipCorrected,
    publishes=(JobProgress, JobMerged),
    summary="merges once every clip of the job has an answer",
)
NOTIFYING_MERGED: Final = StepSpec(
    service="notifier",
    stage="notifying",
    subject=Subject.JOB_MERGED,
    durable="notifier-merged",
    consumes=JobMerged,
    publishes=(),
    summary="Discord and the job's signed callback; the delivery schedule bounds the attempts",
    max_deliver=FOREVER,
    fails_jobs=False,
)
NOTIFYING_FAILED: Final = StepSpec(
    service="notifier",
    stage="notifying",
    subject=Subject.JOB_FAILED,
    durable="notifier-failed",
    consumes=JobFailed,
    publishes=(),
    summary="Discord and the job's signed callback; the delivery schedule bounds the attempts",
    max_deliver=FOREVER,
    fails_jobs=False,
)
VIEWING: Final = StepSpec(
    service="ingest",
    stage="viewing",
    subject=EVERY_EVENT,
    durable="ingest-view",
    consumes=Event,
    publishes=(),
    summary="the job view projector (the jobs KV) and the pipeline's metrics",
    max_deliver=FOREVER,
    fails_jobs=False,
)

STEPS: Final[tuple[StepSpec[Event], ...]] = (
    TRANSCRIBING,
    CLIPPING,
    CORRECTING,
    MERGING_PLANS,
    MERGING_CLIPS,
    NOTIFYING_MERGED,
    NOTIFYING_FAILED,
    VIEWING,
)
"""Every step of the pipeline, in the order an event travels."""

SOURCES: Final[dict[str, tuple[type[Event], ...]]] = {
    "ingest": (JobCreated, JobRetried, JobDeleted, JobFailed, WordsScored, ClipsReady),
}
"""What a service publishes outside its steps: ingest's API (an upload, a retry that resumes from the
stored first pass or plan, a deletion) and its watchdog (``job.failed`` for a job nothing else ends)."""


def steps_of(service: str) -> tuple[StepSpec[Event], ...]:
    """The steps ``service`` declares, in flow order."""
    return tuple(step for step in STEPS if step.service == service)


def senders(event: type[Event]) -> tuple[str, ...]:
    """The services that publish ``event``, in flow order (a step's own publications, the ``job.failed``
    its runtime publishes when it gives up, and :data:`SOURCES`)."""
    found: list[str] = []
    for step in STEPS:
        if event in (*step.publishes, *step.publishes_failure) and step.service not in found:
            found.append(step.service)
    for service, published in SOURCES.items():
        if event in published and service not in found:
            found.append(service)
    return tuple(found)


def receivers(subject: str) -> tuple[StepSpec[Event], ...]:
    """The steps that consume ``subject`` (the projector's wildcard included)."""
    return tuple(step for step in STEPS if step.subject in (subject, EVERY_EVENT))
