"""A window of a job's audio to re-listen to, as the clipper plans it and the merger reconciles it.

One type for both sides: the clipper finds windows over the first-pass words, the clip plan
(:class:`~relisten_contracts.events.ClipSpec`) carries them across NATS, and the merger (or a live
refinement, or the replay tool) reads them back with :func:`window_of_clip`.
"""

from __future__ import annotations

from dataclasses import dataclass

from relisten_contracts.events import ClipSpec


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of the job's audio to re-listen to.

    ``word_first``/``word_last`` is the half-open range ``[word_first, word_last)`` of first-pass
    words inside the window (a word belongs to the window holding its midpoint; edges never cut a
    word, so that is the same as "fully inside"). Ranges of different windows never overlap (the
    clipper guarantees it; the merger tolerates overlaps by giving shared words to the earlier window).
    """

    start_s: float
    end_s: float
    flagged: tuple[int, ...]
    """Indices of the flagged words inside the window, ascending."""
    trigger_confidence: float
    """Lowest probability among the flagged words."""
    word_first: int
    word_last: int
    index: int = 0
    """The window's clip number in the job's plan, the key of its second-pass answer. The clipper
    numbers its windows when it cuts them as clips, so a window it has only planned carries 0."""
    whole: bool = False
    """A doubtful stretch re-heard whole: the merger takes the second pass's words for all of it, not
    only where flagged words are (``ClipPolicy.escalate_flag_rate``)."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def window_of_clip(clip: ClipSpec) -> Window:
    """The window a planned clip re-listens to (its sample-exact edges, in seconds)."""
    return Window(
        index=clip.index,
        start_s=clip.start_s,
        end_s=clip.end_s,
        flagged=tuple(clip.flagged_word_indices),
        trigger_confidence=clip.trigger_confidence,
        word_first=clip.word_first,
        word_last=clip.word_last,
        whole=clip.whole,
    )
