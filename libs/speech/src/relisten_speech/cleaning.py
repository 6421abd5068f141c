"""Pure text work for chat-model answers: what an audio LLM says around the transcript is not speech.

Even under a strict instruction, Qwen2-Audio and its kin answer "The original content of this audio is:
'...'", "Sure! Here is the transcription: ...", wrap the words in quotes or markdown, and append notes
such as "(inaudible)". The merger aligns the answer word by word against the first pass, so every such
word would count as a correction. Only the edges of the answer are touched (lead-ins at the start, notes
at the end, wrapping quotes), plus bracketed sound tags anywhere; words inside the speech stay as they are.
"""

from __future__ import annotations

import re

_INTERJECTION = r"(?:(?:sure|certainly|of\s+course|okay|ok|absolutely|alright)\b[\s,!.:]*)?"
_SUBJECT = r"(?:speaker|audio|clip|recording|person\s+speaking|speech)"
_VERB = r"(?:says|said|is\s+saying|states|reads|contains|goes|can\s+be\s+heard\s+saying)"

# Each is tried at the very start of the answer only; an interjection ("Sure!") goes only with a lead-in
# after it, so speech that starts with "Okay, ..." keeps its first word.
_LEAD_INS = [
    # "Sure!" alone on the first line.
    re.compile(r"^(?:sure|certainly|of\s+course|okay|ok|absolutely|alright)\b[,!.:]*[ \t]*\n", re.I),
    # "Here is the (exact) transcription (of the audio):", "Here's the transcript."
    re.compile(
        rf"^{_INTERJECTION}(?:here\s+is|here's|here\s+are|below\s+is)\s+(?:the\s+|a\s+|an\s+|my\s+)?"
        r"(?:\w+\s+){0,3}?(?:transcription|transcript)\b[^:\n]{0,60}?(?:[:.\n]|$)",
        re.I,
    ),
    re.compile(
        rf"^{_INTERJECTION}(?:here\s+is|here's|here\s+are|below\s+is)\s+(?:the\s+|what\s+)"
        r"[^:\n]{0,60}?(?:text|words|said|says|speech)\b[^:\n]{0,30}?:",
        re.I,
    ),
    # "Transcription:", "The transcript is:", "Exact transcription -"
    re.compile(
        rf"^{_INTERJECTION}(?:the\s+)?(?:exact\s+|verbatim\s+|full\s+)?(?:transcription|transcript)"
        r"(?:\s+of\s+(?:the|this)\s+(?:audio|speech|clip|recording))?(?:\s+is)?\s*[:\-–—]",
        re.I,
    ),
    # "The original content of this audio is: ...", Qwen2-Audio's favourite.
    re.compile(rf"^{_INTERJECTION}the\s+original\s+content\s+of\s+(?:this|the)\s+audio\s+is\s*[:,]?", re.I),
    # "The speaker says:", "In the audio, the speaker says that", "The audio says", "The speech reads,"
    re.compile(
        rf"^{_INTERJECTION}(?:in\s+(?:the|this)\s+(?:audio|clip|recording),?\s+)?(?:the\s+)?{_SUBJECT}\s+{_VERB}"
        r"(?:\s+(?:that|the\s+following(?:\s+words|\s+speech)?))?\s*[:,]?",
        re.I,
    ),
]

_NO_SPEECH = re.compile(
    r"(?:(?:there\s+is\s+|there's\s+)?no\s+(?:audible\s+|intelligible\s+)?(?:speech|words|voice)"
    r"(?:\s+(?:is\s+)?(?:detected|present|heard))?(?:\s+in\s+(?:this|the)\s+(?:audio|clip|recording))?"
    r"|(?:the\s+)?(?:audio|speech|clip|recording)?\s*(?:is\s+)?(?:completely\s+|entirely\s+)?"
    r"(?:unintelligible|inaudible|silent|silence|empty))\s*[.!]?",
    re.I,
)

_NOTE_LINE = re.compile(r"^\s*[(\[]?\s*(?:note|translation|explanation|comment)s?\s*[:\-]", re.I)
_BRACKET_TAG = re.compile(r"\[[^\[\]]{0,80}\]|<[^<>]{0,80}>")
_SOUND_PAREN = re.compile(
    r"\(\s*(?:[\w\s,-]{0,30}\b)?(?:inaudible|unintelligible|indistinct|music|laughs?|laughter|applause|"
    r"silence|noise|coughs?|sighs?|crosstalk|background[\w\s]*|pause|static|unclear|mumbl\w*)\b[^()]{0,40}\)",
    re.I,
)
_TRAILING_PAREN = re.compile(r"\s*\([^()]{0,200}\)\s*[.]?\s*$")
_MARKDOWN = re.compile(r"\*\*|__|`+|^#+\s*|^\s*>\s?|^\s*[-*•]\s+", re.M)

_DOUBLE_QUOTE_CHARS = set('"“”„«»')


def _strip_lead_ins(text: str) -> str:
    for _ in range(4):
        before = text
        for pattern in _LEAD_INS:
            text = pattern.sub("", text, count=1).lstrip(" \t\n,:;-–—")
        if text == before:
            break
    return text


def _unwrap_quotes(text: str) -> str:
    """Remove one pair of quotes around the whole text, when nothing inside suggests they are speech's own."""
    for _ in range(2):
        body = text.rstrip(".!?")
        trailing = text[len(body) :]
        if len(body) < 2:
            return text
        opening, closing, inner = body[0], body[-1], body[1:-1]
        if opening in _DOUBLE_QUOTE_CHARS and closing in _DOUBLE_QUOTE_CHARS:
            if any(ch in _DOUBLE_QUOTE_CHARS for ch in inner):
                return text
        elif opening in "'‘‚" and closing in "'’":
            # Apostrophes inside words ("there's") are fine; a quote at a word edge inside is not.
            if re.search(r"(?:^|\s)['‘’]|['‘’](?:\s|$)", inner) or "‘" in inner:
                return text
        else:
            return text
        inner = inner.strip()
        # Keep the sentence's own final punctuation, wherever the answer put it.
        text = inner if inner[-1:] in ".!?" else inner + trailing
    return text


def clean_answer(answer: str | None) -> str:
    """The transcript inside a chat model's answer: lead-ins, quotes, markdown and notes removed.

    Returns "" when the model said there was nothing to transcribe.
    """
    if not answer:
        return ""
    text = answer.replace("\r\n", "\n").strip()
    text = re.sub(r"^```[\w-]*\n?|\n?```$", "", text).strip()
    text = _MARKDOWN.sub("", text)
    text = _strip_lead_ins(text)
    lines = [line.strip() for line in text.split("\n")]
    kept: list[str] = []
    for line in lines:
        if _NOTE_LINE.match(line):
            if kept:
                break
            continue
        if line:
            kept.append(_strip_lead_ins(line) if not kept else line)
    text = " ".join(kept)
    text = _BRACKET_TAG.sub(" ", text)
    text = _SOUND_PAREN.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    while True:
        shorter = _TRAILING_PAREN.sub("", text)
        if shorter == text:
            break
        text = shorter.strip()
    text = _unwrap_quotes(text.strip())
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text or _NO_SPEECH.fullmatch(text) or not re.search(r"\w", text):
        return ""
    return text
