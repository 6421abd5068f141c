from relisten_contracts import join_words


def test_words_are_single_spaced_whatever_their_own_spaces() -> None:
    assert join_words([" Hello", "world ", "", "  again"]) == "Hello world again"
    assert join_words([" Hello", "world"], "en") == "Hello world"


def test_languages_written_without_spaces_run_together() -> None:
    assert join_words(["客", "観", "的"], "ja") == "客観的"
    assert join_words(["我", "们"], "zh") == "我们"
    assert join_words(["안녕하세요", "여러분"], "ko") == "안녕하세요 여러분"  # Korean spaces its words
