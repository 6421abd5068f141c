"""The text side of a realtime session, pure: which first-pass words are stable enough to send as
deltas, the remainder at a turn's end, log probabilities, and the job a finished session becomes.

Deltas only ever append (OpenAI's clients concatenate them), so a word once sent is never taken back.
While the speaker talks the turn is decoded again every so often from its start; a word is sent once
two decodes in a row agree on it and on every word before it (local agreement: the ends of a
hypothesis flicker, its settled beginning does not), or once a decode heard it with enough audio
after it (``RELISTEN_LIVE_SETTLE_S``), or once a decode heard it and every word before it with a high
probability and heard a word after it (``RELISTEN_LIVE_SURE_PROBABILITY``): the first words of a turn
then go out after one decode, not two. When a later decode revises a word already
sent, the delta stream keeps the sent one and carries on after it; the turn's ``completed`` event
carries the turn's final text, which is what a client should keep.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from relisten_contracts import (
    Correction,
    FirstPass,
    Segment,
    Transcript,
    TranscriptSegment,
    TranscriptWord,
    Word,
    transcript_stats,
)

_STRIP = string.punctuation + "“”‘’«»…–—"
MIN_PROBABILITY = 1e-6


def _key(word: str) -> str:
    return word.strip().strip(_STRIP).lower()


def agreed_prefix(previous: Sequence[str], current: Sequence[str]) -> int:
    """How many leading words two hypotheses share (compared without case and punctuation)."""
    count = 0
    for a, b in zip(previous, current, strict=False):
        if _key(a) != _key(b):
            break
        count += 1
    return count


def settled_count(ends: Sequence[float], audio_s: float, settle_s: float) -> int:
    """How many leading words end at least ``settle_s`` before the end of the audio (word times in
    seconds from the start of that audio)."""
    count = 0
    for end in ends:
        if end > audio_s - settle_s:
            break
        count += 1
    return count


LOOP_WORDS = 3


def before_repeat(words: Sequence[str], size: int = LOOP_WORDS) -> int:
    """How many leading words come before the first repeat of a run of ``size`` words (compared
    without case and punctuation): a partial pass is greedy and unscreened, and at the end of its
    audio Whisper may say a sentence again; the repeat and what follows it are not sent."""
    keys = [_key(w) for w in words]
    seen: set[tuple[str, ...]] = set()
    for at in range(len(keys) - size + 1):
        run = tuple(keys[at : at + size])
        if run in seen:
            return at
        seen.add(run)
    return len(keys)


def sure_count(probabilities: Sequence[float], threshold: float) -> int:
    """How many leading words have at least ``threshold`` probability, never the last one (a word the
    audio ends in may be cut off, and a decode's last word is its least settled)."""
    count = 0
    for probability in probabilities[:-1]:
        if probability < threshold:
            break
        count += 1
    return count


def first_delta_due(sent: int, speech_s: float, after_s: float) -> bool:
    """Whether a turn that has sent ``sent`` words after ``speech_s`` of speech should send a partial's
    leading words now whatever their probability (``RELISTEN_LIVE_FIRST_DELTA_S``; 0: never)."""
    return after_s > 0 and sent == 0 and speech_s >= after_s


FIRST_WORD_SETTLE_S = 0.15
"""Audio after a partial's only or last word that lets it go out as a due turn's first words."""


def first_words(ends: Sequence[float], audio_s: float) -> int:
    """How many leading words of a partial a turn that is due (:func:`first_delta_due`) sends: every
    word but the last, and the last too when at least :data:`FIRST_WORD_SETTLE_S` of audio follows it
    (a slow speaker's first half second often holds a single word)."""
    return max(len(ends) - 1, settled_count(ends, audio_s, FIRST_WORD_SETTLE_S))


def join_delta(words: Sequence[str], already_sent: int) -> str:
    """The delta text for ``words`` following ``already_sent`` words of the same turn: single
    spaces between words, a leading one unless it is the turn's first text."""
    text = " ".join(w.strip() for w in words if w.strip())
    if text and already_sent:
        return " " + text
    return text


RESUME_SEARCH = 2
"""How far (in words) from its position the last sent word is looked for in a new hypothesis."""
SHORT_WORD = 3
"""A last sent word this short only counts as found away from its position with the word sent before
it just ahead (short words recur by chance; longer ones are found even when the word before them was
revised: "pay genius" then "patience is genius")."""


def resume_at(sent: Sequence[str], current: Sequence[str]) -> int:
    """Where ``current`` goes on after the words already ``sent``: just after the sent words' last
    one as ``current`` has it. A hypothesis that inserts or drops a word before that point (a partial
    sent "sheet a", the next one hears "sheet of a truth") would otherwise resend or skip words;
    the last sent word is looked for within :data:`RESUME_SEARCH` words of its position, nearest
    first (a short one with the word sent before it, see :data:`SHORT_WORD`). Not found: its position."""
    at = len(sent)
    if not sent:
        return 0
    last = _key(sent[-1])
    before = _key(sent[-2]) if len(sent) > 1 else None
    for shift in sorted(range(-RESUME_SEARCH, RESUME_SEARCH + 1), key=abs):
        index = at - 1 + shift
        if not 0 <= index < len(current) or _key(current[index]) != last:
            continue
        lead = current[max(0, index - 1 - RESUME_SEARCH) : index]
        if shift and len(last) <= SHORT_WORD and before is not None and before not in (_key(w) for w in lead):
            continue  # a short word ("a", "the") met by chance: the word sent before it is not there
        return index + 1
    return at


@dataclass
class DeltaTracker:
    """What one turn has sent as deltas, and the last hypothesis it was compared with."""

    sent: list[str] = field(default_factory=list)
    previous: list[str] = field(default_factory=list)
    resumed_at: int = 0
    """Index in the last hypothesis of the first word the last call returned (its logprobs)."""

    def partial(self, words: Sequence[str], settled: int = 0) -> list[str]:
        """The words of a partial hypothesis that are newly stable (to send now): those the previous
        hypothesis agrees on, or the first ``settled`` (words the decoder heard well before the end of
        the audio it was given, or heard surely: they rarely change), after the words already sent
        (:func:`resume_at`)."""
        current = [w.strip() for w in words if w.strip()]
        stable = max(agreed_prefix(self.previous, current), min(settled, len(current)))
        self.previous = current
        self.resumed_at = resume_at(self.sent, current)
        new = current[self.resumed_at : stable]
        self.sent.extend(new)
        return new

    def final(self, words: Sequence[str]) -> list[str]:
        """The words of the turn's final first pass not sent yet (all after the sent ones)."""
        current = [w.strip() for w in words if w.strip()]
        self.resumed_at = resume_at(self.sent, current)
        new = current[self.resumed_at :]
        self.sent.extend(new)
        return new


def partial_delta(
    deltas: DeltaTracker,
    words: Sequence[Word],
    audio_s: float,
    speech_s: float,
    *,
    settle_s: float,
    sure_probability: float,
    first_delta_s: float,
) -> tuple[list[Word], list[str]]:
    """What one partial pass of a turn being spoken sends: the pass's words up to a repeat
    (:func:`before_repeat`), and those of them newly stable after the words already sent (agreed,
    settled, sure, or due: see the module's text). ``audio_s`` is the audio the pass heard,
    ``speech_s`` how much of it is speech (the turn less the VAD's prefix padding)."""
    words = list(words[: before_repeat([w.word for w in words])])
    ends = [w.end for w in words]
    settled = settled_count(ends, audio_s, settle_s)
    sure = sure_count([w.probability for w in words], sure_probability)
    forced = first_words(ends, audio_s) if first_delta_due(len(deltas.sent), speech_s, first_delta_s) else 0
    return words, deltas.partial([w.word for w in words], max(settled, sure, forced))


def logprobs(words: Sequence[Word] | Sequence[TranscriptWord]) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs`` entries, one per word (relisten decodes words with a probability each,
    not tokens): ``{"token", "logprob", "bytes"}``."""
    return [
        {
            "token": w.word.strip(),
            "logprob": round(math.log(max(w.probability, MIN_PROBABILITY)), 6),
            "bytes": list(w.word.strip().encode()),
        }
        for w in words
        if w.word.strip()
    ]


def plain_text(words: Sequence[Word] | Sequence[TranscriptWord]) -> str:
    return " ".join(t for t in (w.word.strip() for w in words) if t)


@dataclass(frozen=True)
class FinishedTurn:
    """One turn as the session's job keeps it; times relative to the turn's start."""

    item_id: str
    offset_s: float
    """Where the turn starts on the session's timeline."""
    first_pass: FirstPass
    words: list[TranscriptWord]
    """The final words (refined, or the first pass's when refinement was skipped or failed)."""
    corrections: list[Correction] = field(default_factory=list)
    words_flagged: int = 0
    second_pass_seconds: float = 0.0
    audio_redecoded_seconds: float = 0.0


def _shift_word(w: TranscriptWord, offset: float) -> TranscriptWord:
    return msgspec.structs.replace(w, start=w.start + offset, end=w.end + offset)


def shifted_words(words: Sequence[TranscriptWord], offset: float) -> list[TranscriptWord]:
    return [_shift_word(w, offset) for w in words]


def shifted_corrections(corrections: Sequence[Correction], offset: float) -> list[Correction]:
    return [msgspec.structs.replace(c, start=c.start + offset, end=c.end + offset) for c in corrections]


def _clamped(w: TranscriptWord, duration: float) -> TranscriptWord:
    start = min(max(w.start, 0.0), duration)
    end = min(max(w.end, start), duration)
    if (start, end) == (w.start, w.end):
        return w
    return msgspec.structs.replace(w, start=start, end=end)


def session_first_pass(turns: Sequence[FinishedTurn], duration_s: float, engine: str) -> FirstPass:
    """Every turn's first pass on the session's timeline (what ``first_pass.json`` holds for a job
    that came from a live session): words shifted by their turn's offset, segments re-indexed."""
    words: list[Word] = []
    segments: list[Segment] = []
    seconds = 0.0
    language = "en"
    for turn in turns:
        first = turn.first_pass
        base = len(words)
        language = first.language or language
        seconds += first.seconds
        for w in first.words:
            start = min(max(w.start + turn.offset_s, 0.0), duration_s)
            words.append(
                Word(
                    word=w.word,
                    start=start,
                    end=min(max(w.end + turn.offset_s, start), duration_s),
                    probability=w.probability,
                    raw_probability=w.raw_probability,
                )
            )
        for s in first.segments:
            start = min(s.start + turn.offset_s, duration_s)
            segments.append(
                Segment(
                    start=start,
                    end=min(max(s.end + turn.offset_s, start), duration_s),
                    text=s.text,
                    avg_logprob=s.avg_logprob,
                    compression_ratio=s.compression_ratio,
                    no_speech_prob=s.no_speech_prob,
                    first_word=base + s.first_word,
                    last_word=base + s.last_word,
                )
            )
    warnings = [w for turn in turns for w in turn.first_pass.warnings]
    unique = list({(w.code, w.message): w for w in warnings}.values())
    return FirstPass(
        language=language,
        duration_s=duration_s,
        words=words,
        segments=segments,
        engine=engine,
        seconds=seconds,
        warnings=unique,
    )


def session_transcript(job_id: str, turns: Sequence[FinishedTurn], duration_s: float) -> Transcript:
    """The job's transcript: each turn's final words on the session timeline, one segment per turn."""
    words: list[TranscriptWord] = []
    segments: list[TranscriptSegment] = []
    corrections: list[Correction] = []
    for turn in turns:
        turn_words = [_clamped(w, duration_s) for w in shifted_words(turn.words, turn.offset_s)]
        if turn_words:
            segments.append(
                TranscriptSegment(
                    id=len(segments),
                    start=turn_words[0].start,
                    end=turn_words[-1].end,
                    text=plain_text(turn_words),
                    first_word=len(words),
                    last_word=len(words) + len(turn_words),
                )
            )
        words.extend(turn_words)
        corrections.extend(shifted_corrections(turn.corrections, turn.offset_s))
    first = session_first_pass(turns, duration_s, "")
    stats = transcript_stats(
        first_pass_seconds=first.seconds,
        second_pass_seconds=sum(t.second_pass_seconds for t in turns),
        audio_redecoded_seconds=sum(t.audio_redecoded_seconds for t in turns),
        words_flagged=sum(t.words_flagged for t in turns),
        corrections=corrections,
    )
    return Transcript(
        job_id=job_id,
        text=plain_text(words),
        language=first.language,
        duration_s=duration_s,
        words=words,
        segments=segments,
        corrections=corrections,
        stats=stats,
        warnings=first.warnings,
    )
