"""Words the first pass invented: checks against the audio and against Whisper's known habits.

Whisper writes text where nobody spoke. Measured on this project's first pass (tiny.en, batched):

* a one-word recording with a little noise after the word comes out as "No. Thank you.": the stock
  phrase is a segment of its own over the noise, with ``no_speech_prob`` 0.43-0.76 and its first word
  at probability 0.00-0.10 (the word itself at 0.98);
* a recording in a language the model does not speak comes out as a fluent English loop, one phrase
  repeated many times;
* decoding a quiet gap again (:mod:`relisten_asr.recovery`) can produce the same stock phrases.

Word confidence alone does not catch these ("you." sits at 0.98), so each segment is judged on its
text, its decoder signals and the loudness of its audio relative to the recording's own speech. A
suspect word is either *capped*: its probability lowered to :data:`SUSPECT_PROBABILITY` so the clipper
re-listens to it (and the merger may remove it when the second pass hears nothing there), or
*dropped* when the evidence is clear (see :class:`HallucinationPolicy` for which is which and why).

Pure functions over words, segments and samples; no model here.
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np
from relisten_contracts import FirstPass, JobWarning, Segment, Word
from relisten_runtime.audio import frame_levels

__all__ = [
    "STOCK_PHRASES",
    "SUSPECT_PROBABILITY",
    "HallucinationPolicy",
    "Loudness",
    "Suspect",
    "find_suspects",
    "is_stock_phrase",
    "normalise_text",
    "recovered_is_speech",
    "repetition_loops",
    "screen",
    "unsure_warning",
]

SUSPECT_PROBABILITY = 0.01
"""Probability given to a word suspected of being invented: below any sensible flagging threshold, so
the clipper always re-listens to it, and recognisable to the merger (``MergePolicy.suspect_probability``)."""

STOCK_PHRASES: frozenset[str] = frozenset(
    {
        "thank you",
        "thank you very much",
        "thank you so much",
        "thanks",
        "thanks for watching",
        "thank you for watching",
        "thanks for watching and see you next time",
        "thank you for watching and see you next time",
        "please subscribe",
        "please subscribe to my channel",
        "subscribe to my channel",
        "like and subscribe",
        "don't forget to like and subscribe",
        "i hope you enjoyed this video",
        "i hope you enjoyed this video and i'll see you in the next one",
        "see you in the next video",
        "see you next time",
        "see you in the next one",
        "bye",
        "bye bye",
        "goodbye",
        "you",
        "oh",
        "so",
        "okay",
        "yes",
        "the end",
        "subtitles by the amara.org community",
        "transcription by castingwords",
        "music",
        "applause",
        "silence",
    }
)
"""Texts Whisper writes over silence, noise and music (normalised by :func:`normalise_text`).

Each of them is also ordinary speech, so a match alone proves nothing: it needs evidence from the audio
or the decoder as well (:func:`find_suspects`)."""

_PUNCTUATION = re.compile(r"[^\w\s']+")
_SPACES = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Lower case, typographic apostrophes made plain, punctuation gone, single spaces."""
    folded = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'").lower()
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", folded)).strip(" '")


def is_stock_phrase(text: str) -> bool:
    """True when ``text`` is one of :data:`STOCK_PHRASES`, or one of them said over and over."""
    normal = normalise_text(text)
    if not normal:
        return False
    if normal in STOCK_PHRASES:
        return True
    tokens = normal.split()
    for size in range(1, len(tokens) // 2 + 1):
        if len(tokens) % size == 0:
            unit = tokens[:size]
            if tokens == unit * (len(tokens) // size) and " ".join(unit) in STOCK_PHRASES:
                return True
    return False


@dataclass(frozen=True, slots=True)
class HallucinationPolicy:
    """The thresholds of the checks. Each default is a measurement, noted beside it."""

    stock_no_speech: float = 0.4
    """A stock phrase whose segment has at least this ``no_speech_prob`` is suspect. Measured: the
    invented "Thank you." segments after one-word clips had 0.43-0.76; on the development set no segment
    of real speech with a stock-phrase text reached it."""
    stock_drop_word_probability: float = 0.15
    """A suspect stock phrase is dropped (not just capped) when one of its words is below this
    probability as well: "Thank" in the invented "Thank you." had 0.00-0.10; a spoken "thank you" has
    its "thank" far above that."""
    unbelieved_probability: float = 0.1
    """A segment Whisper doubts is speech (``no_speech_prob`` >= ``stock_no_speech``) in which no word
    reaches this probability is dropped: after one-word clips, the junk words in a second segment ("time.",
    "here.", "most.") had 0.00-0.06; no development-set segment has ``no_speech_prob`` above 0.34."""
    quiet_db: float = 20.0
    """Frames more than this many dB below the recording's speech level are not speech-loud."""
    speech_percentile: float = 95.0
    """The recording's speech level: this percentile of its frame levels (robust for a one-word clip,
    where most frames are silence, and for a long recording, where most are speech)."""
    quiet_fraction: float = 0.25
    """A segment with fewer speech-loud frames than this fraction of its span is over low energy."""
    quiet_no_speech: float = 0.6
    """A segment over low energy with at least this ``no_speech_prob`` is suspect whatever it says
    (Whisper's own no-speech threshold; its batched pipeline does not apply it)."""
    loop_min_words: int = 2
    """Shortest phrase whose consecutive repetition counts as a loop (single words repeat in speech:
    "no, no, no")."""
    loop_min_repeats: int = 3
    """A phrase said this many times in a row is a loop (at least twice: :func:`repetition_loops` tries
    only the phrase lengths at which the phrase's first word comes back)."""
    loop_drop_min_words: int = 3
    loop_drop_min_repeats: int = 4
    """Repeats beyond the first of a loop of phrases of at least ``loop_drop_min_words`` words said at
    least ``loop_drop_min_repeats`` times are dropped (the first copy stays, capped): nobody says "I hope
    you enjoyed this video" four times in a row. Shorter or rarer loops ("let it go, let it go, let it
    go") are only capped, for the second pass to judge."""
    max_compression_ratio: float = 2.4
    """A segment whose text gzips better than this repeats itself: Whisper's own threshold (it decodes
    such a window again at a higher temperature, which the batched pipeline does not). Measured: German
    speech heard by tiny.en as English gibberish ending in a loop had 2.95, its English half 1.93."""
    max_words_per_s: float = 7.0
    """Faster than this (over a segment of at least ``rate_min_s``) is not speech: fast read speech is
    about 4 words/s; on the development set no segment went past 5."""
    max_chars_per_s: float = 35.0
    """The same limit in characters (fast speech is about 20 characters/s)."""
    rate_min_s: float = 0.5
    """Segments shorter than this have rates too noisy to judge."""
    recovered_max_no_speech: float = 0.5
    """A recovered segment (a gap decoded again) must have ``no_speech_prob`` below this."""
    recovered_min_loud_s: float = 0.2
    """... and at least this much speech-loud audio in its span (a short word). Not a fraction of the
    span: a recovered segment's span includes the silence before the speech (measured on the joined
    development set: the spoken "One" opening a sonnet filled 21 % of its 1.4 s segment)."""
    mostly_unsure_fraction: float = 0.5
    """A transcript with at least this fraction of its words below the flagging threshold is "mostly
    unsure" (the development set has about 8 % of words below 0.6)."""
    min_words_for_unsure: int = 1
    frame_s: float = 0.03

    def __post_init__(self) -> None:
        if self.loop_min_repeats < 2:
            raise ValueError(f"loop_min_repeats must be at least 2, got {self.loop_min_repeats}")


Action = Literal["cap", "drop"]


@dataclass(frozen=True, slots=True)
class Suspect:
    """First-pass words ``[first, last)`` that look invented, what to do with them and why."""

    first: int
    last: int
    action: Action
    reason: str


@dataclass(frozen=True, slots=True)
class Loudness:
    """Frame levels of a recording and its speech level, to judge spans against."""

    levels: np.ndarray
    frame_s: float
    speech_db: float
    quiet_db: float

    @classmethod
    def of(cls, audio: np.ndarray, sample_rate: int, policy: HallucinationPolicy) -> Loudness:
        levels = frame_levels(audio, sample_rate, policy.frame_s)
        speech = float(np.percentile(levels, policy.speech_percentile)) if levels.size else 0.0
        return cls(levels=levels, frame_s=policy.frame_s, speech_db=speech, quiet_db=policy.quiet_db)

    def loud_fraction(self, start: float, end: float) -> float:
        """Fraction of the frames touching ``[start, end)`` within ``quiet_db`` of the speech level;
        1.0 for a span with no frames (nothing to judge: not evidence of silence)."""
        first = max(0, int(start / self.frame_s))
        last = min(self.levels.size, max(first + 1, int(np.ceil(end / self.frame_s))))
        window = self.levels[first:last]
        if window.size == 0:
            return 1.0
        return float(np.mean(window >= self.speech_db - self.quiet_db))


def repetition_loops(tokens: Sequence[str], policy: HallucinationPolicy) -> list[tuple[int, int, int]]:
    """Runs of a phrase repeated back to back: ``(start, phrase_length, repeats)`` over ``tokens``
    (already normalised), longest coverage first-come, non-overlapping, in order.

    A phrase of ``size`` tokens at ``position`` can only repeat if the token ``size`` later is the
    same as the first, so only those sizes are tried (from each token's later occurrences), and
    phrases are compared token by token, stopping at the first difference. Trying every size with
    slices was cubic in the worst case and took 9 s on the 4450 words of a 34-minute recording."""
    count = len(tokens)
    empty_before = list(itertools.accumulate((not token for token in tokens), initial=0))
    occurrences: dict[str, list[int]] = {}
    for index, token in enumerate(tokens):
        occurrences.setdefault(token, []).append(index)

    def same(first: int, second: int, size: int) -> bool:
        return all(tokens[first + k] == tokens[second + k] for k in range(size))

    loops: list[tuple[int, int, int]] = []
    position = 0
    while position < count:
        best: tuple[int, int] | None = None  # (size, repeats)
        longest = (count - position) // policy.loop_min_repeats
        later = occurrences[tokens[position]]
        for following in later[bisect.bisect_left(later, position + policy.loop_min_words) :]:
            size = following - position
            if size > longest:
                break
            if empty_before[position + size] != empty_before[position]:
                continue  # a phrase with an empty token is no phrase
            repeats = 1
            while position + (repeats + 1) * size <= count and same(
                position, position + repeats * size, size
            ):
                repeats += 1
            if repeats >= policy.loop_min_repeats and (best is None or size * repeats > best[0] * best[1]):
                best = (size, repeats)
        if best is None:
            position += 1
            continue
        loops.append((position, best[0], best[1]))
        position += best[0] * best[1]
    return loops


def _segment_words(segment: Segment, words: Sequence[Word]) -> Sequence[Word]:
    return words[segment.first_word : segment.last_word]


def find_suspects(
    words: Sequence[Word],
    segments: Sequence[Segment],
    loudness: Loudness,
    policy: HallucinationPolicy | None = None,
) -> list[Suspect]:
    """The stretches of ``words`` that look invented, in order, possibly overlapping (a drop wins).

    * a segment of punctuation alone: dropped;
    * a segment Whisper itself doubts is speech (``no_speech_prob``) where no word is believed: dropped;
    * a stock phrase (:func:`is_stock_phrase`) over a segment Whisper doubts is speech or over low
      energy; dropped when one of its words is also near-zero probability, else capped; a stock phrase
      with a near-zero word and no other evidence: capped;
    * a segment over low energy whose ``no_speech_prob`` is high: capped;
    * a segment whose text repeats itself (compression ratio above Whisper's 2.4): capped;
    * a segment faster than anyone speaks (words or characters per second): capped;
    * a phrase of several words repeated back to back: the first occurrence capped, the repeats capped,
      or dropped for long phrases repeated often (``loop_drop_min_words``, ``loop_drop_min_repeats``).
    """
    policy = policy or HallucinationPolicy()
    suspects: list[Suspect] = []
    for segment in segments:
        inside = _segment_words(segment, words)
        if not inside:
            continue
        text = " ".join(w.word for w in inside)
        span = (min(segment.start, inside[0].start), max(segment.end, inside[-1].end))
        loud = loudness.loud_fraction(*span)
        quiet = loud < policy.quiet_fraction
        where = (segment.first_word, segment.last_word)
        doubted = segment.no_speech_prob >= policy.stock_no_speech
        evidence = f"no_speech {segment.no_speech_prob:.2f}, {loud:.0%} speech-loud"
        lowest = min(w.probability for w in inside)
        if not normalise_text(text):
            suspects.append(Suspect(*where, "drop", f"punctuation without words ({text.strip()!r})"))
            continue
        if doubted and max(w.probability for w in inside) < policy.unbelieved_probability:
            suspects.append(Suspect(*where, "drop", f"{text.strip()!r}: no word believed ({evidence})"))
            continue
        if is_stock_phrase(text) and (doubted or quiet):
            if lowest < policy.stock_drop_word_probability:
                suspects.append(
                    Suspect(*where, "drop", f"stock phrase {text.strip()!r} over non-speech ({evidence})")
                )
            else:
                suspects.append(Suspect(*where, "cap", f"stock phrase {text.strip()!r} ({evidence})"))
            continue
        if is_stock_phrase(text) and lowest < policy.stock_drop_word_probability:
            suspects.append(
                Suspect(*where, "cap", f"stock phrase {text.strip()!r} with a word at {lowest:.2f}")
            )
            continue
        if quiet and segment.no_speech_prob >= policy.quiet_no_speech:
            suspects.append(
                Suspect(
                    *where,
                    "cap",
                    f"low energy ({loud:.0%} speech-loud), no_speech {segment.no_speech_prob:.2f}",
                )
            )
            continue
        if segment.compression_ratio > policy.max_compression_ratio:
            suspects.append(
                Suspect(
                    *where, "cap", f"text repeats itself (compression ratio {segment.compression_ratio:.2f})"
                )
            )
            continue
        seconds = span[1] - span[0]
        if seconds >= policy.rate_min_s:
            per_s = len(inside) / seconds
            chars_per_s = len(normalise_text(text).replace(" ", "")) / seconds
            if per_s > policy.max_words_per_s or chars_per_s > policy.max_chars_per_s:
                suspects.append(
                    Suspect(
                        *where,
                        "cap",
                        f"{per_s:.1f} words/s, {chars_per_s:.0f} characters/s: faster than speech",
                    )
                )
    tokens = [normalise_text(w.word) for w in words]
    for start, size, repeats in repetition_loops(tokens, policy):
        phrase = " ".join(tokens[start : start + size])
        reason = f"{phrase!r} repeated {repeats} times in a row"
        suspects.append(Suspect(start, start + size, "cap", reason))
        long_loop = size >= policy.loop_drop_min_words and repeats >= policy.loop_drop_min_repeats
        action: Action = "drop" if long_loop else "cap"
        suspects.append(Suspect(start + size, start + size * repeats, action, reason))
    return sorted(suspects, key=lambda s: (s.first, s.last))


def recovered_is_speech(
    no_speech_prob: float,
    start: float,
    end: float,
    loudness: Loudness,
    policy: HallucinationPolicy | None = None,
) -> bool:
    """Whether a segment decoded from a gap (:mod:`relisten_asr.recovery`) may join the transcript: the
    decoder must think it speech and its audio must be speech-loud for at least a short word's time."""
    policy = policy or HallucinationPolicy()
    loud_s = loudness.loud_fraction(start, end) * max(end - start, 0.0)
    return no_speech_prob < policy.recovered_max_no_speech and loud_s >= policy.recovered_min_loud_s


def screen(
    first: FirstPass, audio: np.ndarray, sample_rate: int, policy: HallucinationPolicy | None = None
) -> FirstPass:
    """``first`` with suspect words dropped or capped (:func:`find_suspects`), segments re-indexed over
    the words that remain, and a ``possible_hallucination`` warning saying what was done. Unchanged
    (the same object) when nothing is suspect."""
    policy = policy or HallucinationPolicy()
    suspects = find_suspects(first.words, first.segments, Loudness.of(audio, sample_rate, policy), policy)
    if not suspects:
        return first
    action: dict[int, Action] = {}
    for suspect in suspects:
        for index in range(suspect.first, min(suspect.last, len(first.words))):
            if action.get(index) != "drop":
                action[index] = suspect.action
    kept: list[Word] = []
    new_index: list[int] = []  # position in ``kept`` of each old word (or where it would have been)
    for index, word in enumerate(first.words):
        new_index.append(len(kept))
        what = action.get(index)
        if what == "drop":
            continue
        if what == "cap" and word.probability > SUSPECT_PROBABILITY:
            word = msgspec.structs.replace(word, probability=SUSPECT_PROBABILITY)
        kept.append(word)
    new_index.append(len(kept))
    segments: list[Segment] = []
    for segment in first.segments:
        first_word, last_word = new_index[segment.first_word], new_index[segment.last_word]
        if first_word == last_word and segment.first_word < segment.last_word:
            continue  # every word of it was dropped
        inside = kept[first_word:last_word]
        text = segment.text if last_word - first_word == segment.last_word - segment.first_word else ""
        segments.append(
            msgspec.structs.replace(
                segment,
                first_word=first_word,
                last_word=last_word,
                text=text or " ".join(w.word.strip() for w in inside),
            )
        )
    dropped = sum(1 for what in action.values() if what == "drop")
    capped = len(action) - dropped
    reasons = "; ".join(dict.fromkeys(suspect.reason for suspect in suspects))
    parts = []
    if dropped:
        parts.append(f"{dropped} word(s) removed")
    if capped:
        parts.append(f"{capped} word(s) marked unsure")
    warning = JobWarning(
        code="possible_hallucination",
        message=f"The first pass wrote text that may not have been said ({', '.join(parts)}): {reasons}.",
    )
    return msgspec.structs.replace(first, words=kept, segments=segments, warnings=[*first.warnings, warning])


def unsure_warning(
    words: Sequence[Word], threshold: float, policy: HallucinationPolicy | None = None
) -> JobWarning | None:
    """A ``mostly_unsure`` warning when at least ``mostly_unsure_fraction`` of the words are below the
    job's flagging ``threshold``; None otherwise (and for a transcript without words)."""
    policy = policy or HallucinationPolicy()
    if len(words) < max(policy.min_words_for_unsure, 1):
        return None
    unsure = sum(1 for word in words if word.probability < threshold)
    if unsure / len(words) < policy.mostly_unsure_fraction:
        return None
    return JobWarning(
        code="mostly_unsure",
        message=f"{unsure} of the {len(words)} words the first pass heard are below the confidence threshold "
        f"{threshold:g}: the transcript is mostly unsure (noise, another language or no speech?).",
    )
