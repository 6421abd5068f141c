"""Reconciliation: splice second-pass corrections into the first-pass words, under guards.

Pure functions; no I/O. ``merge`` walks the job's words once, copies the words outside windows and
hands each window to ``reconcile_window``, which decides, records and applies that window's
correction.

The original design aligns the two texts, keeps agreeing "anchor" words, replaces what lies between
anchors, interpolates timestamps for new words and discards a correction whose Levenshtein distance
is too large. Two measured refinements (docs/benchmark.md) narrow what is replaced:

* Only edit regions that touch a flagged word are replaced. Windows carry context padding that the
  second pass needs to hear but that the first pass was sure about; rewriting it made WER worse.
* Where the second pass reports word probabilities, a region is replaced only when the second pass
  is more confident there than the first pass was (at threshold 0.4 this took WER from 13.9 % to
  13.3 %). Backends without probabilities (LLMs) are trusted on the drift guard alone.

Status of a window's ``Correction``:

* ``unresolved``: the second pass failed (or never answered); the first-pass words stand.
* ``rejected``: the second pass answered but was not used -- it heard nothing over speech, drifted
  beyond ``max_drift``, or every edit touching a flag failed the confidence gate.
* ``accepted``: the second pass's reading of the flagged words stands -- either at least one region
  was replaced, or the second pass agreed with the first on every flagged word (nothing to change;
  the reason says so), or it heard nothing, or only words it is itself unsure of, where every
  first-pass word was suspected of being invented (``suspect_probability``: the first pass's
  hallucination checks) and those words are removed (what it heard instead is not taken).
"""

from __future__ import annotations

import string
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Literal

import msgspec
from rapidfuzz.distance import Levenshtein
from relisten_contracts import (
    ClipResult,
    Correction,
    ErrorInfo,
    FirstPass,
    Segment,
    TranscriptSegment,
    TranscriptWord,
    Window,
    Word,
    join_words,
)

from relisten_merger.accept import AcceptModel, RegionSignals

__all__ = [
    "EditOp",
    "MergePolicy",
    "MergeWindow",
    "WindowOutcome",
    "align",
    "build_segments",
    "flagged_regions",
    "merge",
    "normalise_token",
    "reconcile_window",
    "transcript_text",
    "word_drift",
]

EditTag = Literal["equal", "replace", "insert", "delete"]


@dataclass(frozen=True, slots=True)
class MergePolicy:
    """The guards of reconciliation."""

    max_drift: float = 0.5
    """Reject a window whose word-level normalised Levenshtein distance (first vs second pass)
    exceeds this: the second pass heard something else entirely (hallucination, wrong clip)."""
    max_whole_drift: float = 0.8
    """``max_drift`` for a stretch re-heard whole (``Window.whole``). Such a stretch is one the first
    pass doubted throughout and the second pass decodes exactly as it decodes a whole recording, so two
    different readings are expected there: measured on tuning, the guard at 0.5 rejected 7 of 23
    stretches, all but one where the second pass was right, at drifts of 0.54-0.62 (docs/yardstick.md).
    0.8 still rejects an answer that shares almost nothing with the first pass (an unrelated or
    garbage answer has a drift of 1)."""
    whole_more_confident: bool = False
    """Take a stretch re-heard whole only when the second pass's mean word probability over it is at
    least the first pass's (when the second pass reports probabilities)."""
    require_more_confident: bool = True
    """Replace a region only where the second pass is more confident than the first (when the
    second pass reports probabilities at all)."""
    min_confidence_gain: float = 0.0
    """How much more confident (mean probability) the second pass must be for a replacement."""
    min_second_probability: float = 0.6
    """A replacement also needs the second pass's own mean probability over the region to reach this:
    a stronger model that is itself unsure is not evidence enough."""
    unscored_probability: float = 0.0
    """Probability recorded for a replacement word whose backend gives none: unknown, so it shows
    as unsure rather than claiming a confidence nobody measured."""
    suspect_probability: float = 0.01
    """First-pass words at or below this probability are suspected of being invented (the asr's
    hallucination checks cap such words at 0.01; tiny.en's own "Thank" of an invented "Thank you." is
    0.00-0.01). When the second pass hears nothing in a window whose every word is such a word, both
    passes agree there is no speech, and the words are removed."""

    accept_model: AcceptModel | None = None
    """When set (and the second pass reports probabilities), this model decides which flagged regions
    are replaced instead of the confidence gate above; the guards before it (failed clip, nothing
    heard, drift) stay in force (``relisten_merger.accept``)."""

    def __post_init__(self) -> None:
        for name, drift in (("max_drift", self.max_drift), ("max_whole_drift", self.max_whole_drift)):
            if not 0.0 <= drift <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {drift}")


MergeWindow = Window
"""The former name of :class:`relisten_contracts.Window`, still imported by the live refinement."""


@dataclass(frozen=True, slots=True)
class WindowOutcome:
    """The words that replace a window's first-pass words, and the record of the decision."""

    words: list[TranscriptWord]
    correction: Correction
    regions_replaced: int = 0


@dataclass(frozen=True, slots=True)
class EditOp:
    """One word-level edit operation: ``first[first_start:first_end]`` becomes
    ``second[second_start:second_end]`` (``equal`` when they already agree)."""

    tag: EditTag
    first_start: int
    first_end: int
    second_start: int
    second_end: int


_STRIPPED = frozenset(string.punctuation) | {"“", "”", "‘", "’", "«", "»", "„", "…", "–", "—", "¿", "¡"}
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'"})


def normalise_token(text: str) -> str:
    """The comparable form of a word: NFKC, lower case, typographic apostrophes made plain,
    punctuation and quotes stripped from both ends. Apostrophes, hyphens and dots inside a word stay
    ("don't", "well-known", "3.5"); numbers are left as written."""
    folded = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower().strip()
    start, end = 0, len(folded)
    while start < end and (folded[start] in _STRIPPED or folded[start].isspace()):
        start += 1
    while end > start and (folded[end - 1] in _STRIPPED or folded[end - 1].isspace()):
        end -= 1
    return folded[start:end]


def _token_ids(first: Sequence[str], second: Sequence[str]) -> tuple[list[int], list[int]]:
    """Map normalised tokens to small integers, so rapidfuzz compares exact tokens (it would
    otherwise compare hashes of the strings)."""
    vocabulary: dict[str, int] = {}
    first_ids = [vocabulary.setdefault(normalise_token(token), len(vocabulary)) for token in first]
    second_ids = [vocabulary.setdefault(normalise_token(token), len(vocabulary)) for token in second]
    return first_ids, second_ids


def align(first: Sequence[str], second: Sequence[str]) -> list[EditOp]:
    """Word-level edit operations turning ``first`` into ``second``, compared after
    ``normalise_token``. The operations cover both sequences completely and in order."""
    first_ids, second_ids = _token_ids(first, second)
    return [
        EditOp(op.tag, op.src_start, op.src_end, op.dest_start, op.dest_end)  # type: ignore[arg-type]
        for op in Levenshtein.opcodes(first_ids, second_ids)
    ]


def word_drift(first: Sequence[str], second: Sequence[str]) -> float:
    """Word-level normalised Levenshtein distance (0 same words, 1 nothing in common) after
    ``normalise_token``; 0 when both are empty."""
    first_ids, second_ids = _token_ids(first, second)
    return float(Levenshtein.normalized_distance(first_ids, second_ids))


@dataclass(frozen=True, slots=True)
class _Heard:
    """One second-pass word; times and probability only when the backend gives them."""

    text: str
    start: float | None
    end: float | None
    probability: float | None


def _second_pass_words(result: ClipResult) -> list[_Heard]:
    """The second pass's words, from its word list when it has one, else from its text. Tokens that
    are only punctuation are dropped: they carry no word to align."""
    if result.words:
        heard = [_Heard(w.word.strip(), w.start, w.end, w.probability) for w in result.words]
    else:
        heard = [_Heard(token, None, None, None) for token in result.text.split()]
    return [word for word in heard if normalise_token(word.text)]


@dataclass(frozen=True, slots=True)
class _Region:
    """A maximal run of non-equal edit operations, between two anchors (or a window edge)."""

    first_start: int
    first_end: int
    second_start: int
    second_end: int


@dataclass(frozen=True, slots=True)
class _WindowFlags:
    """Which of a window's first-pass words are flagged; positions are relative to the window."""

    length: int
    offset: int
    """The window's first word's index in the job."""
    flagged: set[int]
    """Flagged word indices in the job."""

    def is_flagged(self, position: int) -> bool:
        return 0 <= position < self.length and self.offset + position in self.flagged

    def touches(self, region: _Region) -> bool:
        """An edit region touches a flag when it covers a flagged word, or, for a pure insertion, sits
        next to one."""
        if region.first_start == region.first_end:
            return self.is_flagged(region.first_start - 1) or self.is_flagged(region.first_start)
        return any(self.is_flagged(position) for position in range(region.first_start, region.first_end))


def _edit_regions(ops: Sequence[EditOp]) -> list[_Region]:
    """Fuse adjacent non-equal operations: rapidfuzz reports "replace 2, then delete 1" separately,
    but the gates must judge everything between two anchors as one disagreement."""
    regions: list[_Region] = []
    run: list[EditOp] = []
    for op in [*ops, None]:
        if op is not None and op.tag != "equal":
            run.append(op)
            continue
        if run:
            regions.append(
                _Region(run[0].first_start, run[-1].first_end, run[0].second_start, run[-1].second_end)
            )
            run = []
    return regions


def _as_transcript_word(word: Word) -> TranscriptWord:
    return TranscriptWord(
        word=word.word,
        start=word.start,
        end=word.end,
        probability=word.probability,
        raw_probability=word.raw_probability,
    )


def _join(texts: Sequence[str]) -> str:
    return join_words(texts)


def reconcile_window(
    first_words: Sequence[Word],
    flagged: set[int],
    first_offset: int,
    second: ClipResult,
    window_start: float,
    window_end: float,
    policy: MergePolicy,
    *,
    trigger_confidence: float | None = None,
    bounds: tuple[float, float] | None = None,
    whole: bool = False,
) -> WindowOutcome:
    """Decide what of one window's second pass replaces its first-pass words.

    ``first_words`` are the first-pass words of the window, the first being the job's word
    ``first_offset``; ``flagged`` holds job word indices. ``window_start``/``window_end`` are recorded
    in the correction; replacement words are placed within ``bounds`` (default: the window), which
    ``merge`` narrows to the gap left by the neighbouring words outside the window.

    The guards run in order -- failed clip (unresolved), no speech heard over speech, drift over
    ``max_drift`` (rejected) -- and then each edit region between anchors is replaced when it touches
    a flagged word (contains one; for a pure insertion, is next to one) and passes the confidence
    gate. Replacement words take the second pass's own timestamps, clamped into the gap between the
    neighbouring kept words, or are spread evenly over that gap (``interpolated``) when it has none.
    """
    first_texts = [word.word for word in first_words]
    kept = [_as_transcript_word(word) for word in first_words]
    heard = _second_pass_words(second)
    corrected_text = second.text.strip() or _join([word.text for word in heard])
    low, high = bounds if bounds is not None else (window_start, window_end)
    high = max(low, high)
    if trigger_confidence is None:
        flagged_here = [w.probability for i, w in enumerate(first_words) if first_offset + i in flagged]
        trigger_confidence = min(flagged_here, default=1.0)

    def outcome(
        status: Literal["accepted", "rejected", "unresolved"],
        reason: str,
        words: list[TranscriptWord] = kept,
        replaced: int = 0,
    ) -> WindowOutcome:
        correction = Correction(
            start=window_start,
            end=window_end,
            trigger_confidence=trigger_confidence,
            original_text=_join(first_texts),
            corrected_text=corrected_text,
            status=status,
            reason=reason,
            backend=second.backend,
        )
        return WindowOutcome(words=words, correction=correction, regions_replaced=replaced)

    if not second.ok:
        error = f"{second.error.code}: {second.error.message}" if second.error else "no error given"
        return outcome("unresolved", f"second pass failed ({error}); first-pass words kept")
    spoken = [word for word in first_words if normalise_token(word.word)]
    all_suspect = bool(spoken) and all(word.probability <= policy.suspect_probability for word in spoken)
    if not heard:
        if all_suspect:
            return outcome(
                "accepted",
                f"second pass heard no words where the first pass's {len(spoken)} word(s) were suspected "
                f"of being invented (probability <= {policy.suspect_probability:g}); removed",
                [],
            )
        if spoken:
            return outcome("rejected", "second pass heard no words where the first pass heard speech")
        return outcome("accepted", "neither pass heard speech")
    heard_texts = [word.text for word in heard]
    drift = word_drift(first_texts, heard_texts)
    max_drift = policy.max_whole_drift if whole else policy.max_drift
    if drift > max_drift:
        unsure = all(
            w.probability is not None and w.probability < policy.min_second_probability for w in heard
        )
        if all_suspect and unsure:
            # Words already suspected of being invented that the second pass does not hear either, while
            # it is itself unsure of what it heard (over noise Whisper answers a stock "So." as readily):
            # the suspects go and its words are not taken. A confident other reading (or one without
            # probabilities) is no evidence either way: the drift guard keeps the first pass.
            return outcome(
                "accepted",
                f"second pass did not hear the first pass's {len(spoken)} word(s) suspected of being invented "
                f"(probability <= {policy.suspect_probability:g}) and is unsure of its own (all below "
                f"{policy.min_second_probability:g}); removed, its words not taken",
                [],
            )
        return outcome(
            "rejected", f"drift {drift:.2f} exceeds {max_drift:.2f}: second pass heard something else"
        )

    regions = _edit_regions(align(first_texts, heard_texts))
    if not regions:
        return outcome("accepted", "second pass agrees")
    if whole:
        # A stretch the first pass doubted throughout: past the drift guard, the stronger model's words
        # are taken for all of it, per word with no confidence gate (measured: docs/yardstick.md).
        whole_region = _Region(0, len(first_words), 0, len(heard))
        doubted = sum(first_offset + position in flagged for position in range(len(first_words)))
        if policy.whole_more_confident:
            heard_probabilities = [w.probability for w in heard if w.probability is not None]
            first_mean = fmean(word.probability for word in first_words) if first_words else None
            second_mean = fmean(heard_probabilities) if heard_probabilities else None
            if first_mean is not None and second_mean is not None and second_mean < first_mean:
                return outcome(
                    "rejected",
                    f"stretch re-heard whole: the second pass is less sure of its reading (mean probability "
                    f"{second_mean:.2f}) than the first pass of its own ({first_mean:.2f})",
                )
        return outcome(
            "accepted",
            f"stretch re-heard whole (the first pass flagged {doubted} of its "
            f"{len(first_words)} words); the second pass's words taken",
            _apply([whole_region], first_words, kept, heard, low, high, policy),
            1,
        )

    flags = _WindowFlags(len(first_words), first_offset, flagged)
    is_flagged, touches_flag = flags.is_flagged, flags.touches

    touching = [region for region in regions if touches_flag(region)]
    if not touching:
        return outcome(
            "accepted",
            f"second pass agrees on the flagged words; {len(regions)} unflagged difference(s) left as heard first",
        )
    scored = all(word.probability is not None for word in heard)
    gate_on = policy.require_more_confident and scored
    model = policy.accept_model if scored else None
    if model is not None:
        flagged_count = sum(is_flagged(position) for position in range(len(first_words)))
        accepted = [
            region
            for region in touching
            if model.accepts(
                _signals(region, first_words, heard, is_flagged, drift, flagged_count, len(touching))
            )
        ]
    else:
        accepted = [
            region
            for region in touching
            if not gate_on or _second_more_confident(region, first_words, heard, is_flagged, policy)
        ]
    if not accepted:
        return outcome(
            "rejected",
            f"second pass not more confident on any of {len(touching)} flagged edit(s); first-pass words kept",
        )

    words = _apply(accepted, first_words, kept, heard, low, high, policy)
    reason = f"replaced {len(accepted)} of {len(touching)} flagged edit(s)"
    if len(accepted) < len(touching):
        reason += f"; {len(touching) - len(accepted)} kept (second pass less confident)"
    if not scored:
        reason += "; backend gives no confidence, drift guard only"
    elif model is not None:
        reason += "; accept model"
    elif not policy.require_more_confident:
        reason += "; confidence gate off"
    if len(regions) > len(touching):
        reason += f"; {len(regions) - len(touching)} unflagged difference(s) left"
    return outcome("accepted", reason, words, len(accepted))


def _region_sides(
    region: _Region, first_words: Sequence[Word], heard: Sequence[_Heard], is_flagged: Callable[[int], bool]
) -> tuple[list[float], list[float]]:
    """The first-pass probabilities a region would replace and the second-pass probabilities it would
    bring (see ``_second_more_confident`` for insertions and deletions)."""
    if region.first_start < region.first_end:
        first_side = [w.probability for w in first_words[region.first_start : region.first_end]]
    else:
        neighbours = [region.first_start - 1, region.first_start]
        first_side = [first_words[p].probability for p in neighbours if is_flagged(p)]
    if region.second_start < region.second_end:
        second_words = heard[region.second_start : region.second_end]
    else:
        second_words = [
            heard[p] for p in (region.second_start - 1, region.second_start) if 0 <= p < len(heard)
        ]
    second_side = [w.probability for w in second_words if w.probability is not None]
    return first_side, second_side


def _signals(
    region: _Region,
    first_words: Sequence[Word],
    heard: Sequence[_Heard],
    is_flagged: Callable[[int], bool],
    drift: float,
    flagged_count: int,
    touching: int,
) -> RegionSignals:
    first_side, second_side = _region_sides(region, first_words, heard, is_flagged)
    return RegionSignals(
        first_probabilities=tuple(first_side),
        second_probabilities=tuple(second_side),
        words_removed=region.first_end - region.first_start,
        words_inserted=region.second_end - region.second_start,
        drift=drift,
        window_words=len(first_words),
        flagged_in_window=flagged_count,
        touching_regions=touching,
    )


def flagged_regions(
    first_words: Sequence[Word],
    flagged: set[int],
    first_offset: int,
    second: ClipResult,
    policy: MergePolicy,
    low: float,
    high: float,
) -> list[tuple[RegionSignals, list[TranscriptWord]]]:
    """Each flagged edit region of a window that passed the guards, with its signals and the window's
    words if only that region were replaced (empty when a guard decides the window, or the second pass
    has no probabilities). For fitting the accept model: the same regions ``reconcile_window`` judges."""
    heard = _second_pass_words(second)
    if not second.ok or not heard or not all(w.probability is not None for w in heard):
        return []
    first_texts = [word.word for word in first_words]
    drift = word_drift(first_texts, [word.text for word in heard])
    if drift > policy.max_drift:
        return []

    flags = _WindowFlags(len(first_words), first_offset, flagged)
    is_flagged, touches_flag = flags.is_flagged, flags.touches

    regions = _edit_regions(align(first_texts, [word.text for word in heard]))
    touching = [region for region in regions if touches_flag(region)]
    flagged_count = sum(is_flagged(position) for position in range(len(first_words)))
    kept = [_as_transcript_word(word) for word in first_words]
    return [
        (
            _signals(region, first_words, heard, is_flagged, drift, flagged_count, len(touching)),
            _apply([region], first_words, kept, heard, low, max(low, high), policy),
        )
        for region in touching
    ]


def _second_more_confident(
    region: _Region,
    first_words: Sequence[Word],
    heard: Sequence[_Heard],
    is_flagged: Callable[[int], bool],
    policy: MergePolicy,
) -> bool:
    """The confidence gate: mean second-pass probability against mean first-pass probability.

    Replacement: the words on each side. Insertion: the inserted words against the flagged first-pass
    words it sits next to (where the first pass was unsure). Deletion: the second-pass words either
    side of the deletion point (how sure the second pass was, right where it heard nothing) against
    the deleted words.
    """
    if region.first_start < region.first_end:
        first_mean = fmean(w.probability for w in first_words[region.first_start : region.first_end])
    else:
        neighbours = [region.first_start - 1, region.first_start]
        first_mean = fmean(first_words[p].probability for p in neighbours if is_flagged(p))
    if region.second_start < region.second_end:
        second_side = heard[region.second_start : region.second_end]
    else:
        second_side = [
            heard[p] for p in (region.second_start - 1, region.second_start) if 0 <= p < len(heard)
        ]
    second_mean = fmean(w.probability for w in second_side if w.probability is not None)
    return (
        second_mean > first_mean + policy.min_confidence_gain and second_mean >= policy.min_second_probability
    )


def _apply(
    regions: Sequence[_Region],
    first_words: Sequence[Word],
    kept: Sequence[TranscriptWord],
    heard: Sequence[_Heard],
    low: float,
    high: float,
    policy: MergePolicy,
) -> list[TranscriptWord]:
    """Splice the accepted regions in; everything else stays as the first pass heard it."""
    # Match the first pass's spelling of word boundaries (faster-whisper puts a space before each
    # word), so joining the words' texts as they are still reads right.
    lead = " " if any(word.word.startswith(" ") for word in first_words) else ""
    words: list[TranscriptWord] = []
    cursor = 0
    for region in regions:
        words.extend(kept[cursor : region.first_start])
        previous_end = words[-1].end if words else low
        next_start = first_words[region.first_end].start if region.first_end < len(first_words) else high
        gap_start = min(max(previous_end, low), high)
        gap_end = min(max(next_start, gap_start), high)
        words.extend(
            _placed(heard[region.second_start : region.second_end], gap_start, gap_end, lead, policy)
        )
        cursor = region.first_end
    words.extend(kept[cursor:])
    return words


def _placed(
    heard: Sequence[_Heard], gap_start: float, gap_end: float, lead: str, policy: MergePolicy
) -> list[TranscriptWord]:
    """Give replacement words times inside ``[gap_start, gap_end]``, in order."""
    if not heard:
        return []
    if all(word.start is not None and word.end is not None for word in heard):
        placed = []
        cursor = gap_start
        for word in heard:
            assert word.start is not None and word.end is not None
            start = min(max(word.start, cursor), gap_end)
            end = min(max(word.end, start), gap_end)
            cursor = end
            placed.append(
                TranscriptWord(
                    word=lead + word.text,
                    start=start,
                    end=end,
                    probability=_probability(word, policy),
                    source="second",
                )
            )
        return placed
    step = (gap_end - gap_start) / len(heard)
    return [
        TranscriptWord(
            word=lead + word.text,
            start=gap_start + position * step,
            end=gap_end if position == len(heard) - 1 else gap_start + (position + 1) * step,
            probability=_probability(word, policy),
            source="second",
            interpolated=True,
        )
        for position, word in enumerate(heard)
    ]


def _probability(word: _Heard, policy: MergePolicy) -> float:
    return word.probability if word.probability is not None else policy.unscored_probability


_NO_RESULT = ErrorInfo(code="no_result", message="no second-pass result for this window")


def merge(
    first: FirstPass,
    windows: Sequence[Window],
    results: Mapping[int, ClipResult],
    policy: MergePolicy,
) -> tuple[list[TranscriptWord], list[Correction]]:
    """The job's final words and one correction record per window (in time order).

    Words outside every window are copied as the first pass heard them; each window's words come
    from ``reconcile_window`` with its result (``results[window.index]``; a window with no result is
    unresolved). Every first-pass word outside the windows appears exactly once; replacement words
    stay between their neighbours, so the output is in time order when the first pass was. All times
    are clamped into ``[0, duration_s]``.
    """
    source = first.words
    words: list[TranscriptWord] = []
    corrections: list[Correction] = []
    cursor = 0
    for window in sorted(windows, key=lambda w: (w.word_first, w.start_s)):
        window_first = min(max(window.word_first, cursor), len(source))
        window_last = min(max(window.word_last, window_first), len(source))
        words.extend(_as_transcript_word(word) for word in source[cursor:window_first])
        inside = source[window_first:window_last]
        # Clip edges are quantised to samples, so a window may start a hair after its first word (or
        # end a hair before its last): the gap for new words spans both, and never crosses the
        # neighbouring words outside the window.
        low = min(window.start_s, inside[0].start) if inside else window.start_s
        high = max(window.end_s, inside[-1].end) if inside else window.end_s
        if words:
            low = max(low, words[-1].end)
        if window_last < len(source):
            high = min(high, source[window_last].start)
        result = results.get(window.index) or ClipResult(
            clip_index=window.index, ok=False, backend="", text="", error=_NO_RESULT
        )
        outcome = reconcile_window(
            inside,
            set(window.flagged),
            window_first,
            result,
            window.start_s,
            window.end_s,
            policy,
            trigger_confidence=window.trigger_confidence,
            bounds=(low, max(low, high)),
            whole=window.whole,
        )
        words.extend(outcome.words)
        corrections.append(outcome.correction)
        cursor = window_last
    words.extend(_as_transcript_word(word) for word in source[cursor:])
    return [_within(word, first.duration_s) for word in words], corrections


def _within(word: TranscriptWord, duration_s: float) -> TranscriptWord:
    start = min(max(word.start, 0.0), duration_s)
    end = min(max(word.end, start), duration_s)
    if start == word.start and end == word.end:
        return word
    return msgspec.structs.replace(word, start=start, end=end)


_SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")


def build_segments(
    words: Sequence[TranscriptWord],
    first_segments: Sequence[Segment],
    *,
    pause_s: float = 1.0,
    language: str | None = None,
) -> list[TranscriptSegment]:
    """Group the final words into segments.

    With first-pass segments, each word joins the segment whose time span holds its midpoint (a
    word in the pause between two segments stays with the earlier one), so corrected words land in
    the segment they were heard in. Without them, a segment ends after sentence-final punctuation
    or before a pause of at least ``pause_s``. Segments are contiguous runs of words,
    ``[first_word, last_word)``, with the times of their first and last words.
    """
    starts = sorted(segment.start for segment in first_segments)[1:]
    runs: list[tuple[int, int]] = []
    run_start = 0
    for position in range(1, len(words)):
        previous, word = words[position - 1], words[position]
        if first_segments:
            new_segment = bisect_right(starts, (word.start + word.end) / 2) != bisect_right(
                starts, (previous.start + previous.end) / 2
            )
        else:
            new_segment = (
                previous.word.strip().endswith(_SENTENCE_END) or word.start - previous.end >= pause_s
            )
        if new_segment:
            runs.append((run_start, position))
            run_start = position
    if words:
        runs.append((run_start, len(words)))
    return [
        TranscriptSegment(
            id=number,
            start=words[first].start,
            end=words[last - 1].end,
            text=transcript_text(words[first:last], language),
            first_word=first,
            last_word=last,
        )
        for number, (first, last) in enumerate(runs)
    ]


def transcript_text(words: Sequence[TranscriptWord], language: str | None = None) -> str:
    """The words as plain text: single-spaced, or run together in a language written without spaces."""
    return join_words((word.word for word in words), language)
