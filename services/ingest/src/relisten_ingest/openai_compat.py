"""OpenAI-compatible transcription: the request's extra fields and the answer's shapes.

``POST /v1/audio/transcriptions`` takes OpenAI's form (``file``, ``model``, ``language``, ``prompt``,
``response_format``, ``timestamp_granularities[]``, ``temperature``) and answers the way OpenAI's
API does, so that the official SDKs and tools built on them work unchanged. Pure functions: the
route itself is in :mod:`relisten_ingest.openai_api`.

Where relisten knows more than OpenAI says, it adds rather than changes: every ``verbose_json``
word carries its ``probability``; segments carry the first pass's decoder signals.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from relisten_contracts import FirstPass, Segment, Task, Transcript, TranscriptSegment, TranscriptWord

from relisten_ingest.domain import OptionError

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: Final[tuple[ResponseFormat, ...]] = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES: Final = ("word", "segment")
GRANULARITY_FIELDS: Final = ("timestamp_granularities[]", "timestamp_granularities")
DEFAULT_MODEL: Final = "relisten"

MEDIA_TYPES: Final[dict[ResponseFormat, str]] = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/plain; charset=utf-8",
}
"""OpenAI answers subtitles as text/plain; clients read the body as text whatever the format."""

# Whisper's language table: OpenAI's verbose_json names the language ("english"), not its code.
_LANGUAGE_NAMES: Final[dict[str, str]] = dict(
    re.findall(
        r"(\w+):(\w+)",
        "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese "
        "pt:portuguese tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian "
        "id:indonesian hi:hindi fi:finnish vi:vietnamese he:hebrew uk:ukrainian el:greek ms:malay "
        "cs:czech ro:romanian da:danish hu:hungarian ta:tamil no:norwegian th:thai ur:urdu "
        "hr:croatian bg:bulgarian lt:lithuanian la:latin mi:maori ml:malayalam cy:welsh sk:slovak "
        "te:telugu fa:persian lv:latvian bn:bengali sr:serbian az:azerbaijani sl:slovenian "
        "kn:kannada et:estonian mk:macedonian br:breton eu:basque is:icelandic hy:armenian "
        "ne:nepali mn:mongolian bs:bosnian kk:kazakh sq:albanian sw:swahili gl:galician mr:marathi "
        "pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba so:somali af:afrikaans oc:occitan "
        "ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic yi:yiddish lo:lao "
        "uz:uzbek fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese "
        "sa:sanskrit lb:luxembourgish my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese "
        "tt:tatar haw:hawaiian ln:lingala ha:hausa ba:bashkir jw:javanese su:sundanese yue:cantonese",
    )
)


@dataclass(frozen=True)
class TranscriptionRequest:
    """The OpenAI fields beside the job options (``language`` and ``prompt`` go to the job)."""

    model: str = DEFAULT_MODEL
    response_format: ResponseFormat = "json"
    granularities: frozenset[str] = frozenset()
    temperature: float = 0.0

    @property
    def words(self) -> bool:
        return "word" in self.granularities

    @property
    def segments(self) -> bool:
        """OpenAI's default granularity is the segment; asking for words alone leaves segments out."""
        return not self.granularities or "segment" in self.granularities


def _last(fields: Mapping[str, Sequence[str]], name: str) -> str:
    values = fields.get(name) or [""]
    return values[-1].strip()


def parse_transcription_request(fields: Mapping[str, Sequence[str]]) -> TranscriptionRequest:
    """The OpenAI fields of a form (every value of each field, in order); raises :class:`OptionError`.

    ``model`` is accepted whatever it names (relisten has one pipeline); ``temperature`` is checked
    and echoed in the segments but does not change decoding.
    """
    response_format = _last(fields, "response_format").lower() or "json"
    if response_format not in RESPONSE_FORMATS:
        raise OptionError(
            "response_format", f"{response_format[:40]!r} is not one of {', '.join(RESPONSE_FORMATS)}"
        )
    granularities: set[str] = set()
    for name in GRANULARITY_FIELDS:
        for value in fields.get(name, ()):
            for item in value.split(","):
                granularity = item.strip().lower()
                if not granularity:
                    continue
                if granularity not in GRANULARITIES:
                    raise OptionError(name, f"{granularity[:40]!r} is neither 'word' nor 'segment'")
                granularities.add(granularity)

    text = _last(fields, "temperature")
    temperature = 0.0
    if text:
        try:
            temperature = float(text)
        except ValueError:
            raise OptionError("temperature", f"{text[:40]!r} is not a number") from None
        if not math.isfinite(temperature) or not 0.0 <= temperature <= 1.0:
            raise OptionError("temperature", f"{text[:40]} is not between 0 and 1")
    return TranscriptionRequest(
        model=_last(fields, "model")[:200] or DEFAULT_MODEL,
        response_format=response_format,
        granularities=frozenset(granularities),
        temperature=temperature,
    )


def language_name(code: str) -> str:
    """``"en"`` -> ``"english"`` (OpenAI's spelling); an unknown code is returned as it is."""
    return _LANGUAGE_NAMES.get(code.lower(), code).replace("_", " ")


def compression_ratio(text: str) -> float:
    """Whisper's measure: UTF-8 length over zlib-compressed length (high for repetition loops)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _overlap(a_start: float, a_end: float, b: Segment) -> float:
    return min(a_end, b.end) - max(a_start, b.start)


def _signals(
    segment: TranscriptSegment, words: Sequence[TranscriptWord], first: Sequence[Segment]
) -> tuple[float, float, float]:
    """(avg_logprob, compression_ratio, no_speech_prob) of a final segment.

    The first-pass segment that overlaps it most lends its decoder signals (the merger builds the
    final segments from the first pass's, so they line up). Without one, they are derived from the
    final words: the mean log-probability of its words, the text's compression ratio, and no
    no-speech estimate (0).
    """
    best = max(first, key=lambda s: _overlap(segment.start, segment.end, s), default=None)
    if best is not None and _overlap(segment.start, segment.end, best) > 0:
        return best.avg_logprob, best.compression_ratio, best.no_speech_prob
    inside = words[segment.first_word : segment.last_word]
    logprob = sum(math.log(max(w.probability, 1e-6)) for w in inside) / len(inside) if inside else 0.0
    return logprob, compression_ratio(segment.text), 0.0


def _word(word: TranscriptWord) -> dict[str, Any]:
    return {
        "word": word.word.strip(),
        "start": round(word.start, 3),
        "end": round(word.end, 3),
        "probability": round(word.probability, 4),
    }


def json_body(transcript: Transcript) -> dict[str, Any]:
    """``response_format=json``."""
    return {"text": transcript.text}


def verbose_json_body(
    transcript: Transcript,
    request: TranscriptionRequest,
    first_pass: FirstPass | None = None,
    *,
    task: Task = "transcribe",
) -> dict[str, Any]:
    """``response_format=verbose_json``: words (when asked) with probability, segments (by default).

    ``seek`` is the segment's start in 10 ms frames (Whisper's unit); ``tokens`` is empty because the
    pipeline keeps words, not tokenizer ids.
    """
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(transcript.language),
        "duration": round(transcript.duration_s, 3),
        "text": transcript.text,
    }
    if request.words:
        body["words"] = [_word(w) for w in transcript.words if w.word.strip()]
    if request.segments:
        first = first_pass.segments if first_pass is not None else []
        segments = []
        for segment in transcript.segments:
            avg_logprob, ratio, no_speech = _signals(segment, transcript.words, first)
            segments.append(
                {
                    "id": segment.id,
                    "seek": round(segment.start * 100),
                    "start": round(segment.start, 3),
                    "end": round(segment.end, 3),
                    "text": segment.text,
                    "tokens": [],
                    "temperature": request.temperature,
                    "avg_logprob": round(avg_logprob, 4),
                    "compression_ratio": round(ratio, 4),
                    "no_speech_prob": round(no_speech, 4),
                }
            )
        body["segments"] = segments
    body["usage"] = {"type": "duration", "seconds": math.ceil(transcript.duration_s)}
    return body


def error_body(
    message: str, *, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
