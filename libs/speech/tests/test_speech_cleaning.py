"""Chat answers cleaned of what an audio LLM says around the transcript."""

from __future__ import annotations

import pytest
from relisten_speech.cleaning import clean_answer

CLEANING_CASES = [
    # Lead-ins the brief and Qwen2-Audio are known for.
    ('The speaker says: "There\'s iron, they say."', "There's iron, they say."),
    ("Sure! Here is the transcription: there's iron", "there's iron"),
    ("Transcription: hello world", "hello world"),
    ("The audio says hello world", "hello world"),
    ("The original content of this audio is: 'hello world'", "hello world"),
    ('Sure, here\'s the transcript of the audio:\n\n"Hello world."', "Hello world."),
    ("In the audio, the speaker says that the meeting is at noon.", "the meeting is at noon."),
    ("The transcript is: hello", "hello"),
    ("Sure!\nhello world", "hello world"),
    ("Certainly! The speaker says, ‘grain or two’.", "grain or two."),
    # Wrapping quotes, straight and curly, with the full stop inside or outside.
    ("“Hello world.”", "Hello world."),
    ("'there's iron in our blood'", "there's iron in our blood"),
    ('"Hello world".', "Hello world."),
    # Markdown and notes.
    ("**Hello world**", "Hello world"),
    ("```\nhello world\n```", "hello world"),
    ("hello world (inaudible)", "hello world"),
    ("hello world (The speaker sounds tired.)", "hello world"),
    ("hello [music] world", "hello world"),
    ("Hello world.\n\nNote: the audio was noisy.", "Hello world."),
    ("Transcription: hello\nTranslation: bonjour", "hello"),
    (
        "Here is the exact transcription of the audio clip:\n“But his, he makes me harshly feel.”\n"
        "(Note: some words were unclear.)",
        "But his, he makes me harshly feel.",
    ),
    # Nothing said.
    ("There is no speech in this audio.", ""),
    ("(inaudible)", ""),
    ("The audio is unintelligible.", ""),
    ("", ""),
    (None, ""),
    # Speech that merely looks like chat talk stays whole.
    ("Yes, I will come.", "Yes, I will come."),
    ("Okay so we begin", "Okay so we begin"),
    ("Of course he did.", "Of course he did."),
    ("Sure.", "Sure."),
    ('"Hi," he said, "bye."', '"Hi," he said, "bye."'),
    ("The man said that he would come.", "The man said that he would come."),
    ("Here is the text I promised you.", "Here is the text I promised you."),
    ("a grain or two (perhaps) is good", "a grain or two (perhaps) is good"),
]


@pytest.mark.parametrize(("answer", "expected"), CLEANING_CASES)
def test_clean_answer(answer: str | None, expected: str) -> None:
    assert clean_answer(answer) == expected


def test_clean_answer_is_idempotent() -> None:
    for answer, _ in CLEANING_CASES:
        once = clean_answer(answer)
        assert clean_answer(once) == once
