"""The pure parts of the realtime route: input formats, streaming resampling, the energy VAD, the
delta logic, the session configuration and the job a session becomes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from relisten_contracts import Correction, FirstPass, Segment, TranscriptWord, Word
from relisten_ingest.realtime_audio import (
    ALAW,
    FRAME,
    MULAW,
    AudioFormat,
    EnergyVad,
    Resampler,
    SpeechStarted,
    SpeechStopped,
    VadSettings,
    level_dbfs,
    quietest_cut,
    threshold_dbfs,
)
from relisten_ingest.realtime_protocol import (
    LOGPROBS,
    ConfigError,
    SessionConfig,
    apply_update,
    beta_session_object,
    session_object,
)
from relisten_ingest.realtime_turns import (
    DeltaTracker,
    FinishedTurn,
    agreed_prefix,
    before_repeat,
    join_delta,
    logprobs,
    resume_at,
    session_first_pass,
    session_transcript,
    settled_count,
    sure_count,
)

RATE = 16000


def tone(seconds: float, level: float = 0.3, rate: int = RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def syllables(seconds: float, level: float = 0.3) -> np.ndarray:
    """A tone whose loudness rises and falls four times a second, as speech's syllables do."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.03 + 0.97 * np.abs(np.sin(np.pi * 4 * t))
    return (level * 32767 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def room(seconds: float, dbfs: float = -40.0, seed: int = 1) -> np.ndarray:
    """Steady noise at about ``dbfs`` (a room, a hiss)."""
    noise = np.random.default_rng(seed).normal(0, 10 ** (dbfs / 20), int(seconds * RATE))
    return (noise * 32767).astype(np.int16)


# --- formats and resampling ------------------------------------------------------------------------


def test_g711_tables_match_the_standard_points() -> None:
    # mu-law: 0xFF and 0x7F are the two zeros, 0x00 and 0x80 the extremes
    assert (MULAW[0xFF], MULAW[0x7F], MULAW[0x00], MULAW[0x80]) == (0, 0, -32124, 32124)
    # A-law: 0xD5 / 0x55 are the smallest magnitudes, 0xAA / 0x2A the largest
    assert (ALAW[0xD5], ALAW[0x55], ALAW[0xAA], ALAW[0x2A]) == (8, -8, 32256, -32256)
    # both are monotonic within each sign half
    assert np.all(np.diff(MULAW[0x80:0xFF].astype(int)) < 0)


def test_pcm_needs_whole_samples() -> None:
    with pytest.raises(ValueError):
        AudioFormat("audio/pcm", 24000).decode(b"abc")
    assert AudioFormat("audio/pcm", 24000).decode(b"\x01\x00\xff\xff").tolist() == [1, -1]


@given(st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=12))
def test_resampling_in_chunks_equals_resampling_whole(sizes: list[int]) -> None:
    signal = tone(sum(sizes) / 24000, rate=24000, hz=700)
    whole = Resampler(24000)(signal)
    pieces, at = [], 0
    chunked = Resampler(24000)
    for size in sizes:
        pieces.append(chunked(signal[at : at + size]))
        at += size
    assert np.array_equal(np.concatenate(pieces), whole)


def test_resampling_keeps_a_tone_and_the_duration() -> None:
    out = Resampler(24000)(tone(1.0, rate=24000, hz=440))
    assert len(out) == RATE
    # the tone comes out at 440 Hz: its spectrum peaks there
    spectrum = np.abs(np.fft.rfft(out[2000:-2000].astype(float)))
    peak_hz = np.argmax(spectrum) * RATE / len(out[2000:-2000])
    assert abs(peak_hz - 440) < 5
    assert abs(level_dbfs(out[2000:-2000]) - level_dbfs(tone(1.0))) < 0.5
    # 8 kHz telephone audio doubles
    assert len(Resampler(8000)(tone(0.5, rate=8000))) == RATE // 2
    # 16 kHz passes through untouched
    assert np.array_equal(Resampler(16000)(tone(0.1)), tone(0.1))


def test_resampling_removes_what_16_khz_cannot_hold() -> None:
    # a 10 kHz tone at 24 kHz is above the 8 kHz Nyquist frequency of the output: it must not alias
    out = Resampler(24000)(tone(1.0, rate=24000, hz=10000))
    assert level_dbfs(out[500:-500]) < level_dbfs(tone(1.0)) - 30


# --- voice activity -------------------------------------------------------------------------------------


def test_threshold_maps_to_a_level() -> None:
    assert threshold_dbfs(0.5) == -45
    assert threshold_dbfs(0.0) < threshold_dbfs(0.5) < threshold_dbfs(1.0)


def test_vad_finds_a_turn_with_padding_and_silence() -> None:
    vad = EnergyVad(VadSettings(prefix_padding_ms=300, silence_duration_ms=500))
    events = vad.feed(np.concatenate([quiet(1.0), tone(2.0), quiet(1.0)]))
    assert len(events) == 2
    started, stopped = events
    assert isinstance(started, SpeechStarted) and isinstance(stopped, SpeechStopped)
    assert started.sample == int(0.7 * RATE)  # speech at 1.0 s, less 300 ms of padding
    assert stopped.sample == int(3.5 * RATE)  # speech ends at 3.0 s, plus 500 ms of silence


def test_vad_is_the_same_fed_in_any_chunks() -> None:
    audio = np.concatenate([quiet(0.5), tone(1.0), quiet(0.3), tone(0.5), quiet(1.0)])
    whole = EnergyVad().feed(audio)
    vad = EnergyVad()
    chunked = [e for at in range(0, len(audio), 777) for e in vad.feed(audio[at : at + 777])]
    assert chunked == whole
    # a 300 ms pause is shorter than the default 500 ms of silence: one turn
    assert [type(e) for e in whole] == [SpeechStarted, SpeechStopped]


def test_vad_ignores_clicks_and_quiet_noise() -> None:
    click = tone(0.02)
    noise = (np.random.default_rng(1).normal(0, 0.002, 3 * RATE) * 32767).astype(np.int16)
    assert EnergyVad().feed(np.concatenate([quiet(0.5), click, quiet(1.0), noise])) == []


def test_a_turn_starts_where_speech_rises_above_the_room_not_where_its_noise_comes_back() -> None:
    # recordings joined with digitally silent gaps (or a muted input): the reader's noise comes on
    # 0.6 s before each sentence; the running floor has dropped to silence, the room's level has not
    sentence = np.concatenate([room(0.6, seed=2), syllables(1.5), room(0.4, seed=3)])
    audio = np.concatenate([room(1.0), syllables(1.5), room(0.4), quiet(0.6), sentence])
    events = EnergyVad().feed(audio)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped, SpeechStarted]
    second_speech = 1.0 + 1.5 + 0.4 + 0.6 + 0.6
    assert abs(events[2].sample / RATE - (second_speech - 0.3)) < 0.1  # speech less the padding
    # the turns themselves end where they did: a pause goes by the running floor
    assert events[1].sample == EnergyVad().feed(audio[: int(3.5 * RATE)])[1].sample


def test_a_higher_threshold_needs_louder_speech() -> None:
    soft = np.concatenate([quiet(0.5), tone(1.0, level=0.01), quiet(1.0)])  # about -43 dBFS
    assert EnergyVad(VadSettings(threshold=0.3)).feed(soft)
    assert EnergyVad(VadSettings(threshold=0.8)).feed(soft) == []


def test_quietest_cut_finds_the_pause() -> None:
    audio = np.concatenate([tone(3.0), quiet(0.2), tone(1.0)])
    cut = quietest_cut(audio, 2 * RATE)
    assert 3.0 * RATE <= cut <= 3.2 * RATE - FRAME


# --- deltas ------------------------------------------------------------------------------------------------


def test_agreement_ignores_case_and_punctuation() -> None:
    assert agreed_prefix(["Hello,", "world"], ["hello", "World.", "again"]) == 2
    assert agreed_prefix(["a", "b"], ["a", "c"]) == 1
    assert agreed_prefix([], ["a"]) == 0


def test_deltas_send_what_two_passes_agree_on_and_only_append() -> None:
    turn = DeltaTracker()
    assert turn.partial(["Mister", "Quil"]) == []  # nothing to agree with yet
    assert turn.partial(["Mister", "Quilter", "is"]) == ["Mister"]
    assert turn.partial(["Mister", "Quilter", "is", "the"]) == ["Quilter", "is"]
    # a revision of a word already sent does not take it back; later words go on after it
    assert turn.partial(["Mr.", "Quilter", "is", "the", "apostle"]) == []
    assert turn.final(["Mr.", "Quilter", "is", "the", "apostle", "of"]) == ["the", "apostle", "of"]
    assert turn.sent == ["Mister", "Quilter", "is", "the", "apostle", "of"]
    assert turn.final(["Mr.", "Quilter"]) == []  # a shorter final adds nothing


def test_words_heard_well_before_the_end_go_out_after_one_pass() -> None:
    assert settled_count([0.5, 1.3, 1.6], audio_s=2.0, settle_s=0.8) == 1
    assert settled_count([0.5, 0.9, 1.2], audio_s=2.0, settle_s=0.8) == 3
    assert settled_count([], audio_s=2.0, settle_s=0.8) == 0
    turn = DeltaTracker()
    assert turn.partial(["Mister", "Quil"], settled=1) == ["Mister"]
    # agreement still counts beyond the settled words
    assert turn.partial(["Mister", "Quil", "is"], settled=1) == ["Quil"]
    assert turn.partial(["Mister", "Quil", "is", "the"], settled=9) == [
        "is",
        "the",
    ]  # never past the hypothesis


def test_sure_words_go_out_after_one_pass_but_never_the_last_one() -> None:
    assert sure_count([0.95, 0.9, 0.99], 0.8) == 2  # the last word heard may be cut off
    assert sure_count([0.95, 0.5, 0.99, 0.99], 0.8) == 1  # stops at the first unsure word
    assert sure_count([0.99], 0.8) == 0
    assert sure_count([], 0.8) == 0
    turn = DeltaTracker()
    assert turn.partial(["The", "captain", "sai"], settled=sure_count([0.9, 0.85, 0.4], 0.8)) == [
        "The",
        "captain",
    ]
    # a later pass that hears the cut word whole sends it once agreed or sure, after the sent ones
    assert turn.partial(
        ["The", "captain", "said", "that"], settled=sure_count([0.9, 0.9, 0.9, 0.3], 0.8)
    ) == ["said"]


@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8), min_size=1, max_size=6))
def test_deltas_concatenate_to_the_sent_words(hypotheses: list[list[str]]) -> None:
    turn = DeltaTracker()
    text = ""
    for number, words in enumerate(hypotheses[:-1]):
        new = turn.partial(words, settled=number % 3)
        text += join_delta(new, len(turn.sent) - len(new))
    new = turn.final(hypotheses[-1])
    text += join_delta(new, len(turn.sent) - len(new))
    assert text == " ".join(turn.sent)
    final = [w for w in hypotheses[-1] if w.strip()]
    tail = final[turn.resumed_at :]
    assert turn.sent[len(turn.sent) - len(tail) :] == tail  # the deltas end as the final pass does


def test_a_partial_is_cut_where_it_says_a_sentence_again() -> None:
    loop = [
        "The",
        "Egyptian",
        "background",
        "of",
        "the",
        "bondage.",
        "The",
        "Egyptian",
        "background",
        "of",
        "the",
        "bondage.",
    ]
    assert before_repeat(loop) == 6
    assert before_repeat(["a", "b", "a", "c", "a", "b"]) == 6  # two words again are not a loop
    assert before_repeat(["x", "y"]) == 2 and before_repeat([]) == 0


def test_a_revised_hypothesis_goes_on_after_the_sent_words() -> None:
    assert resume_at([], ["a", "b"]) == 0
    assert resume_at(["reply", "sheet", "a"], ["reply", "sheet", "of", "a", "truth"]) == 4  # inserted
    assert resume_at(["my", "lady", "heard"], ["and", "my", "heard", "him"]) == 3  # positional match
    assert resume_at(["what", "else", "did"], ["what", "else", "did", "thee"]) == 3  # unchanged
    assert resume_at(["tell", "me", "what"], ["me", "what", "happened"]) == 2  # the first word dropped
    assert resume_at(["x", "y"], ["p", "q", "r", "y"]) == 2  # "y" by chance, without "x": positional
    assert resume_at(["pay", "genius."], ["Patience", "is", "genius", "That's"]) == 3  # a long word is found
    turn = DeltaTracker()
    assert turn.partial(["reply", "sheet", "a"], settled=3) == ["reply", "sheet", "a"]
    assert turn.partial(["reply", "sheet", "of", "a", "truth", "I"], settled=5) == ["truth"]
    assert turn.resumed_at == 4
    assert turn.final(["reply", "sheet", "of", "a", "truth", "I", "heard"]) == ["I", "heard"]


def test_logprobs_are_per_word() -> None:
    words = [
        Word(word=" hi", start=0, end=0.2, probability=0.5),
        Word(word="x", start=0.2, end=0.3, probability=0.0),
    ]
    entries = logprobs(words)
    assert entries[0] == {"token": "hi", "logprob": round(math.log(0.5), 6), "bytes": list(b"hi")}
    assert entries[1]["logprob"] < -10  # a zero probability is a very small one, not -inf


# --- configuration ---------------------------------------------------------------------------------------


def test_session_update_reads_the_ga_shape() -> None:
    config = apply_update(
        SessionConfig(),
        {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 16000},
                    "transcription": {"model": "whisper-1", "language": "EN", "prompt": "Quilter"},
                    "turn_detection": {"type": "server_vad", "threshold": 0.7, "silence_duration_ms": 800},
                }
            },
            "include": [LOGPROBS],
        },
        beta=False,
        max_prompt=100,
    )
    assert config.format == AudioFormat("audio/pcm", 16000)
    assert (config.model, config.language, config.prompt, config.logprobs) == (
        "whisper-1",
        "en",
        "Quilter",
        True,
    )
    assert config.vad == VadSettings(threshold=0.7, prefix_padding_ms=300, silence_duration_ms=800)
    shown = session_object(config, "sess_x", {"job_id": "x"})
    assert shown["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 800
    assert shown["include"] == [LOGPROBS] and shown["relisten"] == {"job_id": "x"}
    # fields left out keep their value; turn_detection null turns VAD off
    later = apply_update(config, {"audio": {"input": {"turn_detection": None}}}, beta=False, max_prompt=100)
    assert later.vad is None and later.language == "en"


def test_session_update_reads_the_beta_shape() -> None:
    config = apply_update(
        SessionConfig(),
        {
            "input_audio_format": "g711_ulaw",
            "input_audio_transcription": {"language": "en"},
            "turn_detection": None,
        },
        beta=True,
        max_prompt=100,
    )
    assert config.format == AudioFormat("audio/pcmu", 8000) and config.vad is None
    assert beta_session_object(config, "sess_x", {})["input_audio_format"] == "g711_ulaw"


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"type": "realtime"}, "unsupported_session_type", "session.type"),
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}},
            "invalid_session_config",
            "session.audio.input.format.rate",
        ),
        (
            {"audio": {"input": {"format": {"type": "audio/opus"}}}},
            "invalid_session_config",
            "session.audio.input.format.type",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}},
            "invalid_session_config",
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {"audio": {"input": {"transcription": {"prompt": "x" * 101}}}},
            "invalid_session_config",
            "session.audio.input.transcription.prompt",
        ),
        ({"include": ["item.other"]}, "invalid_session_config", "session.include"),
        ("nonsense", "invalid_session_config", "session"),
    ],
)
def test_bad_session_updates_name_the_field(session: object, code: str, param: str) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_update(SessionConfig(), session, beta=False, max_prompt=100)
    assert (caught.value.code, caught.value.param) == (code, param)


# --- the session as a job ----------------------------------------------------------------------------------


def _first(words: list[tuple[str, float, float, float]]) -> FirstPass:
    made = [Word(word=w, start=s, end=e, probability=p) for w, s, e, p in words]
    segment = Segment(
        start=made[0].start,
        end=made[-1].end,
        text=" ".join(w for w, *_ in words),
        avg_logprob=-0.2,
        compression_ratio=1.2,
        no_speech_prob=0.01,
        first_word=0,
        last_word=len(made),
    )
    return FirstPass(
        language="en", duration_s=made[-1].end, words=made, segments=[segment], engine="tiny", seconds=0.5
    )


def test_the_job_puts_every_turn_on_the_session_timeline() -> None:
    one = _first([("Hello", 0.3, 0.6, 0.9), ("word", 0.6, 0.9, 0.3)])
    two = _first([("Again", 0.2, 0.5, 0.95)])
    refined = [
        TranscriptWord(word="Hello", start=0.3, end=0.6, probability=0.9),
        TranscriptWord(word="world", start=0.6, end=0.9, probability=0.8, source="second"),
    ]
    correction = Correction(
        start=0.0,
        end=1.2,
        trigger_confidence=0.3,
        original_text="Hello word",
        corrected_text="Hello world",
        status="accepted",
        reason="more confident",
        backend="b",
    )
    turns = [
        FinishedTurn(
            item_id="a",
            offset_s=1.0,
            first_pass=one,
            words=refined,
            corrections=[correction],
            words_flagged=1,
            second_pass_seconds=0.4,
            audio_redecoded_seconds=1.2,
        ),
        FinishedTurn(
            item_id="b",
            offset_s=5.0,
            first_pass=two,
            words=[TranscriptWord(word="Again", start=0.2, end=0.5, probability=0.95)],
        ),
    ]
    transcript = session_transcript("job", turns, duration_s=6.0)
    assert transcript.text == "Hello world Again"
    assert [(w.start, w.end) for w in transcript.words] == [(1.3, 1.6), (1.6, 1.9), (5.2, 5.5)]
    assert [(s.first_word, s.last_word, s.text) for s in transcript.segments] == [
        (0, 2, "Hello world"),
        (2, 3, "Again"),
    ]
    assert transcript.corrections[0].start == 1.0 and transcript.corrections[0].end == 2.2
    assert transcript.stats.corrections_accepted == 1 and transcript.stats.words_flagged == 1
    assert transcript.stats.first_pass_seconds == 1.0
    first = session_first_pass(turns, 6.0, "tiny")
    assert [w.word for w in first.words] == ["Hello", "word", "Again"]
    assert [(s.first_word, s.last_word) for s in first.segments] == [(0, 2), (2, 3)]
    assert first.words[2].start == 5.2


def test_a_session_without_turns_is_an_empty_transcript() -> None:
    transcript = session_transcript("job", [], duration_s=3.0)
    assert transcript.text == "" and transcript.words == [] and transcript.duration_s == 3.0


def test_a_refinement_shares_the_session_budget() -> None:
    from relisten_ingest.realtime import session_budget

    assert session_budget(32_000, 1.5, shared=True) == (2.0, 1.5)
    assert session_budget(32_000, 1.5, shared=False) == (0.0, 0.0)
    assert session_budget(None, 0.0, shared=True) == (0.0, 0.0)


def test_a_turn_is_decoded_with_the_audio_before_it_within_the_request_limit() -> None:
    from relisten_ingest.realtime import MAX_REQUEST_AUDIO_S, context_start

    rate = 16_000
    assert context_start(20 * rate, 3 * rate, 10.0) == 10 * rate
    assert context_start(2 * rate, 3 * rate, 10.0) == 0
    assert context_start(20 * rate, 20 * rate, 10.0) == 20 * rate - int((MAX_REQUEST_AUDIO_S - 20) * rate)


def test_the_first_delta_is_due_after_enough_speech_and_only_once() -> None:
    from relisten_ingest.realtime_turns import first_delta_due

    assert first_delta_due(0, 0.8, 0.8)
    assert not first_delta_due(0, 0.5, 0.8)
    assert not first_delta_due(2, 3.0, 0.8)  # words already went out
    assert not first_delta_due(0, 3.0, 0.0)  # off


def test_a_due_turn_sends_all_but_the_last_word_and_the_last_when_audio_follows_it() -> None:
    from relisten_ingest.realtime_turns import first_words

    assert first_words([0.3, 0.6, 0.75], 0.8) == 2  # "...": the last word may be cut off
    assert first_words([0.5], 0.8) == 1  # one word, 0.3 s of audio after it
    assert first_words([0.7], 0.8) == 0  # one word at the very end
    assert first_words([], 0.8) == 0


def test_a_partial_pass_sends_its_stable_words_and_not_a_repeat_or_a_cut_off_last_word() -> None:
    from relisten_contracts import Word
    from relisten_ingest.realtime_turns import DeltaTracker, partial_delta

    def words(*spec: tuple[str, float, float]) -> list[Word]:
        return [Word(word=w, start=end - 0.2, end=end, probability=p) for w, end, p in spec]

    rules = {"settle_s": 0.3, "sure_probability": 0.8, "first_delta_s": 0.5}
    tracker = DeltaTracker()
    # 0.4 s of speech: not due yet, nothing sure before the last word, nothing settled
    kept, new = partial_delta(tracker, words(("so", 0.55, 0.5), ("it", 0.65, 0.5)), 0.7, 0.4, **rules)
    assert new == [] and len(kept) == 2
    # due: every word but the last goes out whatever its probability
    _, new = partial_delta(
        tracker, words(("so", 0.55, 0.5), ("it", 0.7, 0.5), ("is", 0.8, 0.5)), 0.8, 0.5, **rules
    )
    assert new == ["so", "it"]
    # a repeated run of three words and what follows it is never sent
    loop = [
        ("is", 0.9, 0.9),
        ("a", 1.0, 0.9),
        ("b", 1.1, 0.9),
        ("is", 1.2, 0.9),
        ("a", 1.3, 0.9),
        ("b", 1.4, 0.9),
    ]
    kept, new = partial_delta(tracker, words(("so", 0.55, 0.9), ("it", 0.7, 0.9), *loop), 2.0, 1.7, **rules)
    assert [w.word for w in kept] == ["so", "it", "is", "a", "b"]
    assert new == ["is", "a", "b"]


def test_a_turns_partial_passes_hear_no_context_until_its_first_delta() -> None:
    from relisten_ingest.realtime import partial_context_s
    from relisten_ingest.realtime_turns import DeltaTracker
    from relisten_ingest.settings import IngestSettings

    settings = IngestSettings(live_partial_context_s=2.0, live_first_partial_context_s=0.0)
    deltas = DeltaTracker()
    assert partial_context_s(settings, deltas) == 0.0
    deltas.partial(["hello", "there"], settled=1)
    assert partial_context_s(settings, deltas) == 2.0


def test_rolling_levels_give_numpys_percentile_of_the_last_levels() -> None:
    from relisten_ingest.realtime_audio import RollingLevels

    rng = np.random.default_rng(3)
    levels = RollingLevels(50)
    seen: list[float] = []
    for _ in range(400):
        level = float(rng.choice([rng.normal(-40, 3), -40.0, rng.normal(-20, 5)]))  # ties too
        levels.add(level)
        seen.append(level)
        for q in (0.0, 10.0, 37.0, 50.0, 100.0):
            assert levels.percentile(q) == float(np.percentile(seen[-50:], q))
    assert len(levels) == 50
