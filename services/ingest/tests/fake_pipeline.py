"""A stand-in for the five pipeline services: one job's events and documents, published step by step
the way the real services publish them (``Infra.publish``, documents in the data Object Store)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgspec
from nats.aio.msg import Msg
from relisten_contracts import (
    ClipCorrected,
    ClipSpec,
    ClipsReady,
    Correction,
    ErrorInfo,
    FirstPass,
    JobCreated,
    JobFailed,
    JobMerged,
    JobOptions,
    JobProgress,
    Segment,
    Stage,
    Subject,
    Transcript,
    TranscriptSegment,
    TranscriptStats,
    TranscriptWord,
    Word,
    WordsScored,
    decode_event,
    encode,
)
from relisten_runtime.infra import Infra

FIRST_WORDS = [
    (" Mister", 0.0, 0.4, 0.95),
    (" quilt", 0.4, 0.6, 0.31),
    (" her", 0.6, 0.9, 0.42),
    (" is", 0.9, 1.0, 0.99),
    (" the", 1.0, 1.1, 0.99),
    (" apostle", 1.1, 1.7, 0.55),
    (" of", 1.7, 1.8, 0.99),
    (" the", 1.8, 1.9, 0.99),
    (" middle", 1.9, 2.3, 0.99),
    (" classes.", 2.3, 3.0, 0.97),
    (" Welcome.", 4.0, 4.6, 0.9),
]
FINAL_WORDS = [
    (" Mister", 0.0, 0.4, 0.95, "first", False),
    (" Quilter", 0.4, 0.9, 0.88, "second", False),
    (" is", 0.9, 1.0, 0.99, "first", False),
    (" the", 1.0, 1.1, 0.99, "first", False),
    (" apostle", 1.1, 1.7, 0.55, "first", False),
    (" of", 1.7, 1.8, 0.99, "first", False),
    (" the", 1.8, 1.9, 0.99, "first", False),
    (" middle", 1.9, 2.3, 0.99, "first", False),
    (" classes.", 2.3, 3.0, 0.97, "first", False),
    (" Welcome.", 4.0, 4.6, 0.9, "first", False),
]
TEXT = "Mister Quilter is the apostle of the middle classes. Welcome."
DURATION_S = 5.0


def first_pass_ref(job_id: str) -> str:
    return f"{job_id}/first_pass.json"


def transcript_ref(job_id: str) -> str:
    return f"{job_id}/transcript.json"


def make_first_pass() -> FirstPass:
    words = [Word(word=w, start=s, end=e, probability=p) for w, s, e, p in FIRST_WORDS]
    return FirstPass(
        language="en",
        duration_s=DURATION_S,
        words=words,
        segments=[
            Segment(
                start=0.0,
                end=3.0,
                text=" Mister quilt her is the apostle of the middle classes.",
                avg_logprob=-0.35,
                compression_ratio=1.1,
                no_speech_prob=0.01,
                first_word=0,
                last_word=10,
            ),
            Segment(
                start=4.0,
                end=4.6,
                text=" Welcome.",
                avg_logprob=-0.2,
                compression_ratio=0.8,
                no_speech_prob=0.02,
                first_word=10,
                last_word=11,
            ),
        ],
        engine="fake",
        seconds=0.5,
    )


CORRECTIONS = [
    Correction(
        start=0.3,
        end=0.9,
        trigger_confidence=0.31,
        original_text="quilt her",
        corrected_text="Quilter",
        status="accepted",
        reason="second pass more confident",
        backend="fake-base",
    ),
    Correction(
        start=1.05,
        end=1.75,
        trigger_confidence=0.55,
        original_text="apostle",
        corrected_text="a possible",
        status="rejected",
        reason="drifted too far",
        backend="fake-base",
    ),
]


def make_transcript(job_id: str) -> Transcript:
    words = [
        TranscriptWord(word=w, start=s, end=e, probability=p, source=src, interpolated=i)  # type: ignore[arg-type]
        for w, s, e, p, src, i in FINAL_WORDS
    ]
    return Transcript(
        job_id=job_id,
        text=TEXT,
        language="en",
        duration_s=DURATION_S,
        words=words,
        segments=[
            TranscriptSegment(
                id=0,
                start=0.0,
                end=3.0,
                text=" Mister Quilter is the apostle of the middle classes.",
                first_word=0,
                last_word=9,
            ),
            TranscriptSegment(id=1, start=4.0, end=4.6, text=" Welcome.", first_word=9, last_word=10),
        ],
        corrections=list(CORRECTIONS),
        stats=TranscriptStats(
            first_pass_seconds=0.5,
            second_pass_seconds=0.8,
            audio_redecoded_seconds=1.5,
            words_flagged=3,
            corrections_accepted=1,
            corrections_rejected=1,
        ),
    )


class FakeJob:
    """The events of one job, each stamped a little after the one before."""

    def __init__(self, infra: Infra, job_id: str, *, clips: int = 2) -> None:
        self.infra = infra
        self.job_id = job_id
        self.clips = clips
        self.clock = time.time()

    def now(self) -> float:
        self.clock = max(self.clock + 0.25, time.time())
        return self.clock

    async def created(self, filename: str = "talk.wav") -> None:
        at = self.now()
        await self.infra.publish(
            JobCreated(
                job_id=self.job_id,
                occurred_at=at,
                filename=filename,
                original_ref=f"{self.job_id}/original",
                audio_ref=f"{self.job_id}/audio.wav",
                duration_s=DURATION_S,
                options=JobOptions(language="en"),
                created_at=at,
            )
        )

    async def progress(self, stage: Stage, fraction: float) -> None:
        await self.infra.publish(
            JobProgress(job_id=self.job_id, occurred_at=self.now(), stage=stage, progress=fraction)
        )

    async def scored(self) -> None:
        ref = first_pass_ref(self.job_id)
        await self.infra.data.put(ref, encode(make_first_pass()))
        await self.infra.publish(
            WordsScored(
                job_id=self.job_id,
                occurred_at=self.now(),
                audio_ref=f"{self.job_id}/audio.wav",
                words_ref=ref,
                language="en",
                duration_s=DURATION_S,
                word_count=len(FIRST_WORDS),
                first_pass_seconds=0.5,
                engine="fake",
            )
        )

    async def ready(self) -> None:
        clips = [
            ClipSpec(
                index=i,
                start_s=float(i),
                end_s=i + 1.0,
                start_sample=i * 16000,
                end_sample=(i + 1) * 16000,
                audio_ref=f"{self.job_id}/clips/{i:04d}.wav",
                flagged_word_indices=[i],
                trigger_confidence=0.31,
            )
            for i in range(self.clips)
        ]
        await self.infra.publish(
            ClipsReady(
                job_id=self.job_id,
                occurred_at=self.now(),
                audio_ref=f"{self.job_id}/audio.wav",
                words_ref=first_pass_ref(self.job_id),
                plan_ref=f"{self.job_id}/plan.json",
                language="en",
                duration_s=DURATION_S,
                first_pass_seconds=0.5,
                words_flagged=3,
                clips=clips,
            )
        )

    def corrected_event(self, index: int, ok: bool = True) -> ClipCorrected:
        return ClipCorrected(
            job_id=self.job_id,
            occurred_at=self.now(),
            clip_index=index,
            clip_count=self.clips,
            plan_ref=f"{self.job_id}/plan.json",
            ok=ok,
            backend="fake-base",
            result_key=f"{self.job_id}.{index}",
            seconds=0.4,
        )

    async def corrected(self, index: int, ok: bool = True) -> None:
        await self.infra.publish(self.corrected_event(index, ok))

    async def merged(self) -> None:
        ref = transcript_ref(self.job_id)
        await self.infra.data.put(ref, encode(make_transcript(self.job_id)))
        await self.infra.publish(
            JobMerged(
                job_id=self.job_id,
                occurred_at=self.now(),
                transcript_ref=ref,
                language="en",
                duration_s=DURATION_S,
                text_preview=TEXT[:40],
                corrections_accepted=1,
                corrections_rejected=1,
                corrections_unresolved=0,
                words_flagged=3,
                first_pass_seconds=0.5,
                second_pass_seconds=0.8,
                audio_redecoded_seconds=1.5,
            )
        )

    async def failed(self, code: str = "transcribing_failed", message: str = "the model crashed") -> None:
        await self.infra.publish(
            JobFailed(
                job_id=self.job_id,
                occurred_at=self.now(),
                stage="transcribing",
                error=ErrorInfo(code=code, message=message),
            )
        )

    async def run_to_completion(self) -> None:
        """Everything after ``job.created``, as the real services would publish it."""
        await self.progress("transcribing", 0.0)
        await self.progress("transcribing", 0.5)
        await self.scored()
        await self.ready()
        await self.progress("correcting", 0.0)
        for index in range(self.clips):
            await self.corrected(index)
        await self.progress("merging", 0.0)
        await self.merged()


@contextlib.asynccontextmanager
async def fake_services(infra: Infra, *, delay_s: float = 0.0) -> AsyncIterator[list[str]]:
    """Answer every ``job.created`` like the pipeline would; yields the ids of the jobs seen.

    The upload's file name steers the outcome: ``fail*`` fails the job, ``slow*`` never finishes.
    """
    seen: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def run(created: JobCreated) -> None:
        job = FakeJob(infra, created.job_id)
        await asyncio.sleep(delay_s)
        if created.filename.startswith("slow"):
            await job.progress("transcribing", 0.1)
        elif created.filename.startswith("fail"):
            await job.progress("transcribing", 0.0)
            await job.failed()
        else:
            await job.run_to_completion()

    async def on_created(msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except msgspec.DecodeError:
            return
        if isinstance(event, JobCreated):
            seen.append(event.job_id)
            task = asyncio.create_task(run(event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    subscription = await infra.nc.subscribe(str(Subject.JOB_CREATED), cb=on_created)
    try:
        yield seen
    finally:
        await subscription.unsubscribe()
        for task in tasks:
            task.cancel()
