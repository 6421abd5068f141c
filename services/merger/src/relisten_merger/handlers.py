"""clips.ready / clip.corrected -> once every clip has an answer, merge -> job.merged.

Every replica may see the last clip; merging is deterministic and the result is published under one
message id, so a second merge of the same job is harmless and dropped by the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from relisten_contracts import (
    ClipCorrected,
    ClipResult,
    ClipsReady,
    Event,
    FirstPass,
    JobMerged,
    JobProgress,
    Transcript,
    names,
    stats_fields,
    transcript_stats,
    window_of_clip,
)
from relisten_runtime.steps import NOTHING, Publisher
from relisten_runtime.store import JobStore

from relisten_merger.domain import MergePolicy, build_segments, merge, transcript_text

log = logging.getLogger(__name__)

PREVIEW_CHARS = 500


def build_transcript(
    plan: ClipsReady, first: FirstPass, results: dict[int, ClipResult], policy: MergePolicy
) -> Transcript:
    """The final transcript of a job from its plan, first pass and second-pass answers (pure)."""
    windows = [window_of_clip(clip) for clip in plan.clips]
    words, corrections = merge(first, windows, results, policy)
    stats = transcript_stats(
        first_pass_seconds=first.seconds,
        second_pass_seconds=sum(r.seconds for r in results.values()),
        audio_redecoded_seconds=sum(c.end_s - c.start_s for c in plan.clips),
        words_flagged=plan.words_flagged,
        corrections=corrections,
    )
    return Transcript(
        job_id=plan.job_id,
        text=transcript_text(words, first.language),
        language=first.language,
        duration_s=first.duration_s,
        words=words,
        segments=build_segments(words, first.segments, language=first.language),
        corrections=corrections,
        stats=stats,
        warnings=list(first.warnings),
        language_detection=first.language_detection,
        routing=first.routing,
    )


@dataclass
class MergeHandler:
    """The ``merging`` steps (:data:`relisten_contracts.flow.MERGING_PLANS`, ``MERGING_CLIPS``)."""

    publisher: Publisher
    """For ``job.progress`` as the merge begins (before the transcript is built and stored)."""
    store: JobStore
    policy: MergePolicy

    async def on_clips_ready(self, event: ClipsReady) -> Sequence[Event]:
        if not event.clips:
            return await self._merge(
                event, {}, await self.store.transcript(names.transcript_object(event.job_id))
            )
        return NOTHING

    async def on_clip_corrected(self, event: ClipCorrected) -> Sequence[Event]:
        # Once merged, later clip events of the job (the corrector finishes a batch of clips at once)
        # need no look at every clip result again: the stored transcript is announced again.
        stored = await self.store.transcript(names.transcript_object(event.job_id))
        results: dict[int, ClipResult] = {}
        if stored is None:
            found = await self._results(event.job_id, event.clip_count)
            if found is None:
                return NOTHING  # other clips are still being re-listened to; the last one merges
            results = found
        plan = await self.store.required_plan(event.plan_ref)
        return await self._merge(plan, results, stored)

    async def _results(self, job_id: str, clip_count: int) -> dict[int, ClipResult] | None:
        results = {}
        for index in range(clip_count):
            result = await self.store.clip_result(names.clip_result_key(job_id, index))
            if result is None:
                return None
            results[index] = result
        return results

    async def _merge(
        self, plan: ClipsReady, results: dict[int, ClipResult], stored: Transcript | None
    ) -> Sequence[Event]:
        """Build, store and announce the transcript, or announce ``stored`` again.

        Every clip.corrected that finds all results triggers a merge, and a redelivery may too. The
        merge is deterministic, so a stored transcript is final: it is announced again rather than
        stored again (replacing an object under a reader's feet can leave that reader waiting for
        chunks that are gone).
        """
        ref = names.transcript_object(plan.job_id)
        transcript = stored
        if transcript is not None:
            log.debug("job %s was merged already; announcing its transcript again", plan.job_id)
        else:
            await self.publisher.publish(JobProgress(job_id=plan.job_id, stage="merging", progress=0.0))
            first = await self.store.required_first_pass(plan.words_ref)
            transcript = build_transcript(plan, first, results, self.policy)
            await self.store.put_transcript(ref, transcript)
            log.info(
                "job %s merged: %d corrections accepted, %d rejected, %d unresolved",
                plan.job_id,
                transcript.stats.corrections_accepted,
                transcript.stats.corrections_rejected,
                transcript.stats.corrections_unresolved,
            )
        return [
            JobMerged(
                job_id=plan.job_id,
                transcript_ref=ref,
                language=transcript.language,
                duration_s=transcript.duration_s,
                text_preview=transcript.text[:PREVIEW_CHARS],
                **stats_fields(transcript.stats),
                options=plan.options,
                warnings=list(transcript.warnings),
            )
        ]
