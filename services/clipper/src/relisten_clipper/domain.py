"""Where to re-listen: flag uncertain words, cluster them, plan clip windows snapped to pauses.

Pure functions over the first pass's words and segments; no I/O. The pipeline is

    flag_words -> cluster_flags -> plan_windows -> (to_sample_range, context_prompt) per window

and ``find_windows`` chains the first three.

The original design's algorithm is kept -- words with p < 0.6, clusters of flags closer than
5 s, a window of +-10 s around each cluster's centre, overlapping windows merged -- with these
changes, each for a measured or structural reason (and, as ``ClipPolicy``'s defaults, the benchmarked
sizes: 1 s clusters, no fixed window, a budget of a fifth of the audio):

* Segment signals can flag words too: a confident repetition loop (high compression ratio) or a
  segment the decoder itself scored low (avg log-prob) has words with p >= threshold that are
  still wrong. Each lever is a separate switch in ``ClipPolicy`` so it can be benchmarked.
* Every window covers its whole cluster plus ``context_pad_s`` on each side, whatever the half
  window: measured, the stronger model fed isolated words answers confidently and wrongly (no
  padding 38.7 % WER, 0.3 s 14.1 %, 1 s 12.4 %).
* Window edges are snapped to pauses so no word is cut in half; an edge never lies strictly
  inside a word, and snapping never moves an edge inwards past the cluster's padded span.
* Windows longer than ``max_window_s`` are split at pauses, because both second-pass families
  see at most 30 s at once (Whisper pads/truncates to 30 s; Qwen2-Audio's feature extractor
  keeps 30 s). Pieces left with no flagged word are dropped: the merger only ever replaces
  words that touch a flag, so decoding them would be pure cost.

Word lists are assumed to be in time order, as every first-pass engine emits them.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from relisten_contracts import Segment, Window, Word

__all__ = [
    "ClipPolicy",
    "Window",
    "cluster_flags",
    "context_prompt",
    "doubtful_stretches",
    "find_windows",
    "flag_words",
    "plan_windows",
    "to_sample_range",
    "within_budget",
]


@dataclass(frozen=True, slots=True)
class ClipPolicy:
    """Every knob of flagging and window planning; the defaults are the values the service ships.

    Window sizes and the budget are what ``make bench`` measured best on the development set: tight
    windows (each cluster of flagged words plus 1 s of context on each side, no fixed-length window
    around it) and at most a fifth of the audio re-listened to, the most doubtful windows first. The
    original design's values were ``cluster_gap_s=5``, ``half_window_s=10``, ``max_redecode_fraction=1``.

    ``threshold`` is per job (``JobOptions.confidence_threshold``): build the policy with
    ``dataclasses.replace(policy, threshold=options.confidence_threshold)``.
    """

    threshold: float = 0.6
    """Words with probability strictly below this are flagged."""
    flag_repetition_loops: bool = True
    """Flag every word of a segment whose compression ratio exceeds ``max_compression_ratio``."""
    max_compression_ratio: float = 2.4
    flag_low_logprob: bool = True
    """Flag every word of a segment whose average log-probability is below ``min_avg_logprob``."""
    min_avg_logprob: float = -1.0
    flag_no_speech: bool = False
    """Flag every word of a segment the decoder thought was probably silence (words over silence
    are a classic Whisper hallucination). Off until measured."""
    max_no_speech_prob: float = 0.6
    cluster_gap_s: float = 1.0
    """Flagged words separated by less than this (end of one to start of the next) share a cluster."""
    half_window_s: float = 0.0
    """Half the length of the window centred on a cluster; 0 keeps just the cluster and its context."""
    context_pad_s: float = 1.0
    """Audio kept on each side of a cluster's flagged words, whatever ``half_window_s`` says."""
    min_window_s: float = 1.0
    """A window shorter than this is widened around its centre (before clamping to the audio)."""
    max_window_s: float = 30.0
    """Longer windows are split at pauses (second-pass models see at most 30 s at once)."""
    merge_gap_s: float = 0.0
    """Windows separated by at most this are merged (0: only overlapping or touching ones)."""
    snap_search_s: float = 1.5
    """How far a window edge may move to reach a better pause."""
    edge_margin_s: float = 0.15
    """How far from the nearest word a snapped edge sits when the pause is long enough; word
    timestamps are only accurate to a tenth of a second or two."""
    context_chars: int = 200
    """Characters of preceding first-pass text offered to the second pass as a prompt."""
    max_redecode_fraction: float = 0.2
    """Budget: at most this fraction of the audio is re-listened to. When the windows cover more, the
    most doubtful ones (lowest trigger confidence) are kept first, so cost stays bounded on a recording
    the first pass found hard everywhere. 1.0: no budget."""
    escalate_flag_rate: float = 0.0
    """A first-pass segment in which at least this share of the words is flagged is re-heard whole, and
    the second pass's words replace all of its words, not only the flagged ones: where the first pass
    doubts much, the stronger model is also right about words the first pass was sure of. Such
    stretches are outside the budget (how much is re-heard grows with how hard the recording is);
    flagged words elsewhere get windows as usual. 0: off."""

    def __post_init__(self) -> None:
        non_negative = {
            "cluster_gap_s": self.cluster_gap_s,
            "half_window_s": self.half_window_s,
            "context_pad_s": self.context_pad_s,
            "min_window_s": self.min_window_s,
            "merge_gap_s": self.merge_gap_s,
            "snap_search_s": self.snap_search_s,
            "edge_margin_s": self.edge_margin_s,
            "context_chars": self.context_chars,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.max_window_s <= 0:
            raise ValueError(f"max_window_s must be > 0, got {self.max_window_s}")
        if not 0.0 <= self.max_redecode_fraction <= 1.0:
            raise ValueError(f"max_redecode_fraction must be within [0, 1], got {self.max_redecode_fraction}")
        if not 0.0 <= self.escalate_flag_rate <= 1.0:
            raise ValueError(f"escalate_flag_rate must be within [0, 1], got {self.escalate_flag_rate}")
        if self.min_window_s > self.max_window_s:
            raise ValueError(f"min_window_s ({self.min_window_s}) exceeds max_window_s ({self.max_window_s})")


def flag_words(words: Sequence[Word], segments: Sequence[Segment], policy: ClipPolicy) -> list[int]:
    """Indices (ascending, unique) of the words worth a second listen.

    A word is flagged when its probability is below ``policy.threshold``, or when it belongs to a
    segment whose decoder signals are suspect and the matching lever of the policy is on.
    """
    flagged = {index for index, word in enumerate(words) if word.probability < policy.threshold}
    for segment in segments:
        if _segment_is_suspect(segment, policy):
            flagged.update(range(max(segment.first_word, 0), min(segment.last_word, len(words))))
    return sorted(flagged)


def _segment_is_suspect(segment: Segment, policy: ClipPolicy) -> bool:
    return (
        (policy.flag_repetition_loops and segment.compression_ratio > policy.max_compression_ratio)
        or (policy.flag_low_logprob and segment.avg_logprob < policy.min_avg_logprob)
        or (policy.flag_no_speech and segment.no_speech_prob > policy.max_no_speech_prob)
    )


def cluster_flags(words: Sequence[Word], flagged: Sequence[int], gap_s: float) -> list[list[int]]:
    """Group flagged word indices into clusters ("ambiguity events").

    Walking the flags in time order, a flag joins the current cluster when the silence between the
    cluster's latest end and the flag's start is strictly less than ``gap_s``; otherwise it starts
    a new cluster. Clusters and the indices in them are in time order.
    """
    ordered = sorted(set(flagged), key=lambda index: (words[index].start, index))
    clusters: list[list[int]] = []
    reach = -math.inf
    for index in ordered:
        word = words[index]
        if clusters and word.start - reach < gap_s:
            clusters[-1].append(index)
            reach = max(reach, word.end)
        else:
            clusters.append([index])
            reach = word.end
    return clusters


@dataclass(frozen=True, slots=True)
class _Gap:
    """A stretch with no word in it, where a window edge may fall."""

    lo: float
    hi: float
    at_audio_start: bool
    at_audio_end: bool

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def cut_near(self, target: float, margin: float) -> float:
        """The point of the gap nearest ``target`` that keeps ``margin`` away from neighbouring words
        where the gap is wide enough (the middle of a short pause); the audio's own boundaries need
        no margin."""
        low_margin = 0.0 if self.at_audio_start else min(margin, self.width / 2)
        high_margin = 0.0 if self.at_audio_end else min(margin, self.width / 2)
        return min(max(target, self.lo + low_margin), self.hi - high_margin)


def _free_gaps(words: Sequence[Word], duration_s: float) -> list[_Gap]:
    """The complement, within ``[0, duration_s]``, of the words' open intervals, in time order.

    Words are first clamped to the audio and overlapping words fused, so a point in a gap is never
    strictly inside any word, even when the first pass's timestamps overlap. Touching words leave a
    zero-width gap: the shared instant is a legal edge.
    """
    spans = sorted(
        (min(max(word.start, 0.0), duration_s), min(max(word.end, 0.0), duration_s)) for word in words
    )
    occupied: list[tuple[float, float]] = []
    for start, end in spans:
        if end <= start:
            continue
        if occupied and start < occupied[-1][1]:
            occupied[-1] = (occupied[-1][0], max(occupied[-1][1], end))
        else:
            occupied.append((start, end))
    gaps: list[_Gap] = []
    previous_end = 0.0
    for start, end in occupied:
        gaps.append(_Gap(previous_end, start, at_audio_start=not gaps, at_audio_end=False))
        previous_end = end
    gaps.append(_Gap(previous_end, duration_s, at_audio_start=not gaps, at_audio_end=True))
    return gaps


def _snap_edge(target: float, limit: float, outward: int, gaps: Sequence[_Gap], policy: ClipPolicy) -> float:
    """Move a window edge from ``target`` into a pause.

    Among the pauses whose cut point is within ``snap_search_s`` of the target, the widest wins
    (ties: the nearest), because a long pause is where a clip edge is least likely to clip speech.
    ``limit`` is the padded cluster edge the window must keep covering: a start edge
    (``outward = -1``) may not move later than it, an end edge (``outward = +1``) not earlier. If
    no pause is in reach, the edge moves outwards to the nearest legal point, which always exists
    (the audio's start and end are legal).
    """
    best: tuple[float, float, float] | None = None
    # ``gaps`` are in time order (their ends too): only those reaching into the search span can
    # hold the cut, so a long recording's edges do not each scan its thousands of pauses.
    index = bisect_left(gaps, target - policy.snap_search_s, key=_gap_end)
    while index < len(gaps) and gaps[index].lo <= target + policy.snap_search_s:
        gap = gaps[index]
        index += 1
        cut = gap.cut_near(target, policy.edge_margin_s)
        cut = min(cut, limit) if outward < 0 else max(cut, limit)
        if not gap.lo <= cut <= gap.hi or abs(cut - target) > policy.snap_search_s:
            continue
        key = (gap.width, -abs(cut - target), cut)
        if best is None or key > best:
            best = key
    if best is not None:
        return best[2]
    bound = min(target, limit) if outward < 0 else max(target, limit)
    if outward < 0:
        # the last pause starting by the bound ends latest of those
        return min(gaps[bisect_right(gaps, bound, key=_gap_start) - 1].hi, bound)
    # the first pause ending at or after the bound starts earliest of those
    return max(gaps[bisect_left(gaps, bound, key=_gap_end)].lo, bound)


def _gap_start(gap: _Gap) -> float:
    return gap.lo


def _gap_end(gap: _Gap) -> float:
    return gap.hi


def _widen_empty(at: float, gaps: Sequence[_Gap], duration_s: float) -> tuple[float, float]:
    """The shortest legal non-empty window starting (or, at the end of the audio, ending) at ``at``."""
    later = [gap.lo if gap.lo > at else gap.hi for gap in gaps if gap.hi > at]
    if later:
        return at, min(later)
    earlier = [gap.hi if gap.hi < at else gap.lo for gap in gaps if gap.lo < at]
    return (max(earlier) if earlier else 0.0), min(max(at, 0.0), duration_s)


@dataclass(slots=True)
class _Span:
    start: float
    end: float


def plan_windows(
    words: Sequence[Word], clusters: Sequence[Sequence[int]], duration_s: float, policy: ClipPolicy
) -> list[Window]:
    """Turn clusters of flagged words into clip windows, sorted, disjoint and snapped to pauses.

    For each cluster: ``[centre - half_window_s, centre + half_window_s]`` (centre of the flagged
    words' span), widened to ``min_window_s`` and to cover the cluster plus ``context_pad_s``,
    clamped to ``[0, duration_s]``. Each edge then moves, by at most ``snap_search_s`` and never
    inwards past the padded cluster, to the widest pause in reach (or outwards to the nearest word
    boundary when there is none). Windows that overlap, touch or lie within ``merge_gap_s`` are
    merged, and windows longer than ``max_window_s`` are split at pauses. Every flagged word of every cluster ends up in exactly one
    window; an edge never lies strictly inside a word. Pieces of a split window touch (one's end is
    the next one's start); other windows are separated by more than ``merge_gap_s``.
    """
    if duration_s <= 0 or not words:
        return []
    gaps = _free_gaps(words, duration_s)
    snapped: list[_Span] = []
    for cluster in clusters:
        if not cluster:
            continue
        flag_start = _clamp(min(words[index].start for index in cluster), 0.0, duration_s)
        flag_end = _clamp(max(words[index].end for index in cluster), flag_start, duration_s)
        centre = (flag_start + flag_end) / 2
        half = max(policy.half_window_s, policy.min_window_s / 2)
        must_start = max(flag_start - policy.context_pad_s, 0.0)
        must_end = min(flag_end + policy.context_pad_s, duration_s)
        want_start = _clamp(min(centre - half, must_start), 0.0, duration_s)
        want_end = _clamp(max(centre + half, must_end), 0.0, duration_s)
        start = _snap_edge(want_start, must_start, -1, gaps, policy)
        end = _snap_edge(want_end, must_end, +1, gaps, policy)
        if end <= start:
            # Only a zero-length flagged word with no padding gets here; widen to the next legal
            # point so the clip has audio in it.
            start, end = _widen_empty(start, gaps, duration_s)
        snapped.append(_Span(start, end))
    merged: list[_Span] = []
    for span in sorted(snapped, key=lambda span: span.start):
        if merged and span.start <= merged[-1].end + policy.merge_gap_s:
            merged[-1].end = max(merged[-1].end, span.end)
        else:
            merged.append(span)
    flagged = sorted({index for cluster in clusters for index in cluster})
    pieces = [piece for span in merged for piece in _split_long(span, gaps, words, flagged, policy)]
    return _windows_over(pieces, words, flagged, duration_s)


def _split_long(
    span: _Span, gaps: Sequence[_Gap], words: Sequence[Word], flagged: Sequence[int], policy: ClipPolicy
) -> list[_Span]:
    """Cut a window longer than ``max_window_s`` at pauses into pieces of balanced length.

    Each cut aims at an even share of what is left, may move ``snap_search_s`` either way (never
    past ``max_window_s``), and prefers, in order: a point not within ``context_pad_s`` of a flagged
    word (so the flag keeps its context), a wider pause, a point nearer the aim.
    """
    if span.end - span.start <= policy.max_window_s:
        return [span]
    flagged_spans = [(words[index].start, words[index].end) for index in flagged]
    pieces: list[_Span] = []
    cursor = span.start
    while span.end - cursor > policy.max_window_s:
        share = math.ceil((span.end - cursor) / policy.max_window_s)
        aim = cursor + (span.end - cursor) / share
        ceiling = cursor + policy.max_window_s
        best: tuple[bool, float, float, float] | None = None
        for gap in gaps:
            cut = gap.cut_near(aim, policy.edge_margin_s)
            if not (cursor < cut <= ceiling and abs(cut - aim) <= policy.snap_search_s):
                continue
            clear = all(
                cut <= start - policy.context_pad_s or cut >= end + policy.context_pad_s
                for start, end in flagged_spans
            )
            key = (clear, gap.width, -abs(cut - aim), cut)
            if best is None or key > best:
                best = key
        if best is not None:
            cut = best[3]
        else:
            # No pause near the aim (a very long word, or speech with no gaps at all): take the
            # latest legal point that keeps the piece short enough, else the earliest after it.
            below = [
                min(gap.hi, ceiling) for gap in gaps if cursor < min(gap.hi, ceiling) and gap.lo <= ceiling
            ]
            above = [
                max(gap.lo, ceiling) for gap in gaps if gap.hi >= ceiling and max(gap.lo, ceiling) < span.end
            ]
            if below:
                cut = max(below)
            elif above:
                cut = min(above)
            else:
                break
        pieces.append(_Span(cursor, cut))
        cursor = cut
    pieces.append(_Span(cursor, span.end))
    return pieces


def _windows_over(
    spans: Sequence[_Span], words: Sequence[Word], flagged: Sequence[int], duration_s: float
) -> list[Window]:
    """Attach word ranges and flags to the final spans, dropping spans without a flagged word.

    A word belongs to the span holding its midpoint; where two spans touch, the shared instant
    belongs to the later one, so word ranges never overlap.
    """
    midpoints = [(_clamp(w.start, 0.0, duration_s) + _clamp(w.end, 0.0, duration_s)) / 2 for w in words]
    flagged_set = set(flagged)
    windows: list[Window] = []
    for position, span in enumerate(spans):
        touches_next = position + 1 < len(spans) and spans[position + 1].start <= span.end
        word_first = bisect_left(midpoints, span.start)
        word_last = bisect_left(midpoints, span.end) if touches_next else bisect_right(midpoints, span.end)
        inside = tuple(index for index in range(word_first, word_last) if index in flagged_set)
        if not inside:
            continue
        windows.append(
            Window(
                start_s=span.start,
                end_s=span.end,
                flagged=inside,
                trigger_confidence=min(words[index].probability for index in inside),
                word_first=word_first,
                word_last=word_last,
            )
        )
    return windows


def within_budget(windows: Sequence[Window], duration_s: float, fraction: float) -> list[Window]:
    """The windows to keep when at most ``fraction`` of ``duration_s`` may be re-listened to.

    The most doubtful windows (lowest trigger confidence; ties: the earlier) are kept first; a window
    that no longer fits is skipped and a shorter, less doubtful one may still fit. The kept windows
    stay in time order.
    """
    budget = fraction * duration_s
    if sum(window.duration_s for window in windows) <= budget:
        return list(windows)
    kept: set[int] = set()
    used = 0.0
    for position in sorted(range(len(windows)), key=lambda i: (windows[i].trigger_confidence, i)):
        length = windows[position].duration_s
        if used + length <= budget:
            kept.add(position)
            used += length
    return [window for position, window in enumerate(windows) if position in kept]


def find_windows(
    words: Sequence[Word],
    segments: Sequence[Segment],
    duration_s: float,
    policy: ClipPolicy,
    *,
    budget_s: float | None = None,
) -> list[Window]:
    """``flag_words``, ``cluster_flags``, ``plan_windows`` and ``within_budget`` in one call; the
    windows may take ``budget_s`` seconds when given, else the policy's fraction of ``duration_s``.
    With ``escalate_flag_rate`` set, the doubtful stretches (:func:`doubtful_stretches`) come first,
    outside the budget, and the windows are planned for the flagged words outside them. In time order."""
    flagged = flag_words(words, segments, policy)
    stretches = doubtful_stretches(words, segments, flagged, duration_s, policy)
    if stretches:
        flagged = [i for i in flagged if not any(s.word_first <= i < s.word_last for s in stretches)]
    windows = plan_windows(words, cluster_flags(words, flagged, policy.cluster_gap_s), duration_s, policy)
    if stretches:
        # A window's context may reach into a stretch: it stops at the stretch's edge instead, so no
        # audio is re-heard twice (its flagged words lie outside every stretch).
        windows = _windows_over(
            [span for window in windows if (span := _outside(window, stretches)) is not None],
            words,
            flagged,
            duration_s,
        )
    if budget_s is not None:
        windows = within_budget(windows, budget_s, 1.0)
    else:
        windows = within_budget(windows, duration_s, policy.max_redecode_fraction)
    return sorted([*stretches, *windows], key=lambda window: window.start_s)


STRETCH_MARGIN_S = 0.3
"""Audio kept on each side of a doubtful segment re-heard whole (up to the neighbouring words): the first
pass's word times are only accurate to a tenth of a second or two, and a word cut at the clip's edge is lost."""


def doubtful_stretches(
    words: Sequence[Word],
    segments: Sequence[Segment],
    flagged: Sequence[int],
    duration_s: float,
    policy: ClipPolicy,
) -> list[Window]:
    """The stretches to re-hear whole (``ClipPolicy.escalate_flag_rate``): the first pass's segments in
    which at least that share of the words is flagged, as windows marked ``whole``. Empty when the
    policy turns it off.

    A segment is the unit the first pass decoded (with the batched pipeline: one voice-activity chunk of
    at most 30 s of speech), so the second pass, decoding the same audio the same way, hears it as it
    would have when decoding the whole recording: measured, base re-decoding the first pass's segments
    matched base's own decode of the recordings word for word, where stretches cut at pauses lost to it
    (docs/yardstick.md). Each window reaches ``STRETCH_MARGIN_S`` past its segment's words, never past
    a neighbouring word or another stretch."""
    if policy.escalate_flag_rate <= 0 or not flagged or duration_s <= 0:
        return []
    flagged_set = set(flagged)
    spans: list[_Span] = []
    for segment in sorted(segments, key=lambda s: s.start):
        first, last = max(segment.first_word, 0), min(segment.last_word, len(words))
        if last <= first:
            continue
        doubted = sum(index in flagged_set for index in range(first, last))
        if doubted == 0 or doubted < policy.escalate_flag_rate * (last - first):
            continue
        start = min(segment.start, words[first].start)
        end = max(segment.end, words[last - 1].end)
        floor = max(words[first - 1].end if first > 0 else 0.0, spans[-1].end if spans else 0.0)
        ceiling = words[last].start if last < len(words) else duration_s
        spans.append(
            _Span(
                _clamp(start - STRETCH_MARGIN_S, min(floor, start), start),
                _clamp(end + STRETCH_MARGIN_S, end, max(ceiling, end)),
            )
        )
    gaps = _free_gaps(words, duration_s)
    # A segment spans its pauses too: one longer than a window may be is cut at pauses, as windows are
    # (measured against decoding it whole in 30 s windows: cheaper and no worse; docs/yardstick.md).
    pieces = [
        piece
        for span in spans
        for piece in _split_long(
            _Span(_clamp(span.start, 0.0, duration_s), _clamp(span.end, 0.0, duration_s)),
            gaps,
            words,
            [],
            policy,
        )
    ]
    return [
        dataclasses.replace(window, whole=True)
        for window in _windows_over(pieces, words, flagged, duration_s)
    ]


def _outside(window: Window, stretches: Sequence[Window]) -> _Span | None:
    """The part of ``window`` before or after each stretch it overlaps (None when nothing is left)."""
    start, end = window.start_s, window.end_s
    for stretch in stretches:
        if start < stretch.end_s and stretch.start_s < end:
            if stretch.start_s <= start:
                start = stretch.end_s
            else:
                end = stretch.start_s
    return _Span(start, end) if end > start else None


def to_sample_range(start_s: float, end_s: float, sample_rate: int, total_samples: int) -> tuple[int, int]:
    """The sample range ``[start, end)`` of a window, rounded to the nearest sample and clamped to
    the audio; ``start <= end`` always. Adjacent windows sharing an edge get adjacent ranges."""
    start = min(max(round(start_s * sample_rate), 0), total_samples)
    end = min(max(round(end_s * sample_rate), start), total_samples)
    return start, end


def context_prompt(words: Sequence[Word], window: Window, max_chars: int = 200) -> str:
    """The first-pass text just before the window (at most ``max_chars``, whole words only), to
    prompt the second pass with what was being said."""
    kept: list[str] = []
    length = -1
    for word in reversed(words[: window.word_first]):
        text = word.word.strip()
        if not text:
            continue
        if length + 1 + len(text) > max_chars:
            break
        kept.append(text)
        length += 1 + len(text)
    return " ".join(reversed(kept))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
