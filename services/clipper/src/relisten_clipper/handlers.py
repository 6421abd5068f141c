"""words.scored -> find the doubtful stretches -> cut sample-exact clips -> clips.ready."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from relisten_contracts import ClipSpec, ClipsReady, Event, FirstPass, WordsScored, names
from relisten_runtime.audio import SAMPLE_RATE, SAMPLE_WIDTH
from relisten_runtime.store import JobStore

from relisten_clipper.clips import cut_clip
from relisten_clipper.domain import ClipPolicy, Window, context_prompt, find_windows, to_sample_range

log = logging.getLogger(__name__)


@dataclass
class ClipHandler:
    """The ``clipping`` step (:data:`relisten_contracts.flow.CLIPPING`)."""

    store: JobStore
    policy: ClipPolicy

    async def __call__(self, event: WordsScored) -> Sequence[Event]:
        first = await self.store.required_first_pass(event.words_ref)

        windows: list[Window] = []
        if event.options.correction != "off":
            policy = dataclasses.replace(self.policy, threshold=event.options.confidence_threshold)
            windows = find_windows(first.words, first.segments, first.duration_s, policy)
        words_flagged = sum(len(window.flagged) for window in windows)
        clips = await self._store_clips(event, first, windows) if windows else []
        ready = ClipsReady(
            job_id=event.job_id,
            audio_ref=event.audio_ref,
            words_ref=event.words_ref,
            plan_ref=names.plan_object(event.job_id),
            language=first.language,
            duration_s=first.duration_s,
            first_pass_seconds=first.seconds,
            words_flagged=words_flagged,
            clips=clips,
            options=event.options,
        )
        await self.store.put_plan(ready)
        log.info(
            "job %s: %d words flagged, %d clips covering %.1f of %.1f s",
            event.job_id,
            words_flagged,
            len(clips),
            sum(w.duration_s for w in windows),
            first.duration_s,
        )
        return [ready]

    async def _store_clips(
        self, event: WordsScored, first: FirstPass, windows: list[Window]
    ) -> list[ClipSpec]:
        pcm = await self.store.audio_pcm(event.audio_ref)
        total = len(pcm) // SAMPLE_WIDTH
        clips = []
        for index, window in enumerate(windows):
            first_sample, end_sample = to_sample_range(window.start_s, window.end_s, SAMPLE_RATE, total)
            ref = names.clip_object(event.job_id, index)
            await self.store.put_audio(ref, cut_clip(pcm, first_sample, end_sample))
            clips.append(
                ClipSpec(
                    index=index,
                    start_s=first_sample / SAMPLE_RATE,
                    end_s=end_sample / SAMPLE_RATE,
                    start_sample=first_sample,
                    end_sample=end_sample,
                    audio_ref=ref,
                    flagged_word_indices=list(window.flagged),
                    trigger_confidence=window.trigger_confidence,
                    context_prompt=context_prompt(first.words, window, self.policy.context_chars),
                    word_first=window.word_first,
                    word_last=window.word_last,
                    whole=window.whole,
                )
            )
        return clips
