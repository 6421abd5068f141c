"""Scoring of non-English transcripts (relisten.multilingual): any script, accents kept."""

from __future__ import annotations

import pytest

from relisten.multilingual import clips, error_rate, normalise


def test_normalise_keeps_letters_of_every_script() -> None:
    assert normalise("¿Señor D. Manuel?") == "señor d manuel"
    assert normalise("Ausführliche, unerdichtete") == "ausführliche unerdichtete"
    assert normalise("그는 이리저리 피하면서") == "그는 이리저리 피하면서"
    assert normalise("ＡＢＣ-def") == "abc def"  # NFKC folds full-width letters


def test_error_rates_by_words_or_characters() -> None:
    assert error_rate("Mi muy querido Manuel:", "mi muy querido manuel", "es") == 0.0
    assert error_rate("uno dos tres cuatro", "uno dos tres", "es") == pytest.approx(0.25)
    # Japanese is written without spaces: characters, whatever spaces the transcript has
    assert error_rate("客観的実在", "客 観 的 実 在", "ja") == 0.0
    assert error_rate("客観的実在", "客観的存在", "ja") == pytest.approx(0.2)


def test_every_fixture_has_audio_and_a_reference() -> None:
    found = clips()
    assert {c.language for c in found} >= {"en", "es", "de", "fr", "it", "pt", "ja", "ko"}
    for clip in found:
        assert clip.path.is_file() and clip.reference.strip()
