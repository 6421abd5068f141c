"""Per-language accuracy and language-identification accuracy of the first pass, on real speech.

``python -m relisten.multilingual`` runs the asr service's own language identification and routing
(:class:`relisten_asr.language.LanguageRouter`, the models the service loads) on every clip of
``tests/fixtures/multilingual`` (Spanish, German, French, Italian, Portuguese, Japanese, Korean; see its
ATTRIBUTION.md) and on the English LibriSpeech fixtures, without naming the language, and prints, per
clip and per language: the detected language and its probability, where the job was routed, and the
error rate against the human reference (words; characters for Japanese, written without spaces).
Non-English jobs skip the second pass, so this first pass is their transcript.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from relisten_contracts import WRITTEN_WITHOUT_SPACES, FirstPass

FIXTURES: Final = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
MULTILINGUAL: Final = FIXTURES / "multilingual"
ENGLISH: Final = (
    (
        FIXTURES / "audio" / "ls-dev-clean-1272-128104-0000.wav",
        "Mister Quilter is the apostle of the middle classes and we are glad to welcome his gospel",
    ),
    (
        FIXTURES / "audio" / "ls-test-other-1688-142285-0000.flac",
        "there's iron they say in all our blood and a grain or two perhaps is good but his he makes me "
        "harshly feel has got a little too much of steel anon",
    ),
)
CHARACTER_SCORED: Final = WRITTEN_WITHOUT_SPACES
"""Languages written without spaces between words: scored by characters."""


def normalise(text: str) -> str:
    """Scoring normalisation for any script: NFKC, case folded, hyphens to spaces, punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("-", " ").replace("’", "'")
    text = re.sub(r"[^\w' ]+", " ", text)
    return " ".join(word.strip("'") for word in text.split() if word.strip("'"))


def error_rate(reference: str, hypothesis: str, language: str) -> float:
    """Word error rate, or character error rate for languages written without spaces."""
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    if language in CHARACTER_SCORED:
        return float(jiwer.cer(ref.replace(" ", ""), hyp.replace(" ", "")))
    return float(jiwer.wer(ref, hyp))


@dataclass(frozen=True)
class Clip:
    path: Path
    language: str
    reference: str


def clips() -> list[Clip]:
    found = [Clip(path, "en", reference) for path, reference in ENGLISH]
    with open(MULTILINGUAL / "manifest.jsonl", encoding="utf-8") as manifest:
        for line in manifest:
            if line.strip():
                item = json.loads(line)
                found.append(Clip(MULTILINGUAL / item["file"], item["language"], item["reference"]))
    return found


@dataclass(frozen=True)
class Outcome:
    clip: Clip
    detected: str
    probability: float
    first_pass: str
    second_pass: bool
    text: str
    error: float
    identified: str
    """When the language was identified: "before" the first pass, "after" it (it looked wrong), or
    "no" (the English first pass looked right)."""


def identified(first: FirstPass) -> str:
    """When the job's language was identified (see :attr:`Outcome.identified`)."""
    if first.language_detection is None:
        return "no"
    reason = first.routing.reason if first.routing is not None else ""
    return "after" if "looked wrong" in reason or "(the first pass:" in reason else "before"


async def evaluate(selected: list[Clip]) -> list[Outcome]:
    from faster_whisper import decode_audio
    from relisten_asr.engines import FasterWhisperEngine
    from relisten_asr.language import LanguageRouter
    from relisten_asr.settings import AsrSettings
    from relisten_contracts import JobOptions

    settings = AsrSettings()
    primary = FasterWhisperEngine(settings)
    router = LanguageRouter(settings, primary)
    router.primary_loaded(primary.load())
    outcomes: list[Outcome] = []
    for clip in selected:
        audio = decode_audio(str(clip.path), sampling_rate=16000)
        first = await router.first_pass(audio, JobOptions())
        text = " ".join(w.word for w in first.words)
        detection, routing = first.language_detection, first.routing
        outcomes.append(
            Outcome(
                clip=clip,
                detected=detection.language if detection else first.language,
                probability=detection.probability if detection else 0.0,
                first_pass=routing.first_pass if routing else first.engine,
                second_pass=routing.second_pass if routing else True,
                text=text,
                error=error_rate(clip.reference, text, clip.language),
                identified=identified(first),
            )
        )
    return outcomes


def report(outcomes: list[Outcome]) -> str:
    lines = [
        "| clip | language | detected (p) | identified | first pass | second pass | error rate |",
        "| --- " * 7 + "|",
    ]
    for o in outcomes:
        unit = "CER" if o.clip.language in CHARACTER_SCORED else "WER"
        lines.append(
            f"| {o.clip.path.name} | {o.clip.language} | {o.detected} "
            + (f"({o.probability:.2f})" if o.identified != "no" else "(first pass)")
            + f" | {o.identified} | "
            f"{o.first_pass} | {'yes' if o.second_pass else 'skipped'} | {o.error:.1%} {unit} |"
        )
    by_language: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_language[o.clip.language].append(o)
    lines += ["", "| language | clips | identified | mean error rate |", "| --- " * 4 + "|"]
    for language, group in sorted(by_language.items()):
        right = sum(o.detected == language for o in group)
        mean = sum(o.error for o in group) / len(group)
        lines.append(f"| {language} | {len(group)} | {right}/{len(group)} | {mean:.1%} |")
    right = sum(o.detected == o.clip.language for o in outcomes)
    after = sum(o.identified == "after" for o in outcomes)
    before = sum(o.identified == "before" for o in outcomes)
    lines.append(
        f"\nlanguage right: {right}/{len(outcomes)} clips (identified before the first pass: {before}, "
        f"after it: {after}, not needed: {len(outcomes) - before - after})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", action="append", help="only clips in this language (repeatable)")
    parser.add_argument("--show-text", action="store_true", help="print each transcript")
    args = parser.parse_args(argv)
    selected = [c for c in clips() if not args.language or c.language in args.language]
    outcomes = asyncio.run(evaluate(selected))
    if args.show_text:
        for o in outcomes:
            print(f"{o.clip.path.name}: {o.text}", file=sys.stderr)
    print(report(outcomes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
