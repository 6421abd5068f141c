"""The web page's live mode in a real headless Chromium against the real services, with a real
recording as the microphone (Chromium's fake capture device playing a WAV file): press Live, see the
first-pass words appear as they are heard, see a turn refined, press Stop and follow the link to the
stored job. API keys are on, so the WebSocket's ``?access_token=`` path is the one tested.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (skipped, saying so, without them).
"""

from __future__ import annotations

import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from relisten.dataset import SAMPLE_RATE, long_form_recordings, word_error_rate
from relisten.services import SERVICES
from relisten.stack import Stack
from tests.e2e.test_web_page import chromium, in_browser, wait_until

pytestmark = [pytest.mark.nats, pytest.mark.e2e, in_browser]

KEY = "web-live-test-key"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot-web-live.png"
RECORDING = "chapter-1688-142285"
UTTERANCES = slice(2, 5)  # three utterances, about 14 s: three turns
HEARD_TIMEOUT_S = 30.0
REFINED_TIMEOUT_S = 60.0
UI_TIMEOUT_S = 15.0
MAX_WER = 0.5
"""Loose: what the browser captured went through the fake device and a resampler; the point is that
the page shows the words that were spoken, not a benchmark."""


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(nats_url, tmp_path_factory.mktemp("stack"), extra_env={"RELISTEN_API_KEYS": KEY}) as running:
        running.start(SERVICES)
        yield running


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The recording Chromium's fake microphone plays (a WAV file, as it wants), and its reference."""
    chapter = next(r for r in long_form_recordings(include_sonnets=False) if r.name == RECORDING)
    kept = chapter.utterances[UTTERANCES]
    start, end = int((kept[0].start_s) * SAMPLE_RATE), int((kept[-1].end_s + 0.3) * SAMPLE_RATE)
    # A second of silence first: the page connects before the words begin.
    audio = np.concatenate(
        [np.zeros(SAMPLE_RATE, np.float32), chapter.audio[start:end], np.zeros(SAMPLE_RATE * 3, np.float32)]
    )
    path = tmp_path_factory.mktemp("microphone") / "speech.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path, " ".join(u.reference for u in kept)


@pytest.fixture
def browser(microphone: tuple[Path, str]) -> Iterator[WebDriver]:
    path, _ = microphone
    with tempfile.TemporaryDirectory(prefix="relisten-chromium-") as profile:
        driver = chromium(
            Path(profile),
            (
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={path}%noloop",
                "--autoplay-policy=no-user-gesture-required",
            ),
        )
        try:
            yield driver
        finally:
            driver.quit()


def _explain(driver: WebDriver, stack: Stack) -> str:
    shown = driver.execute_script(
        """return ['live-badge', 'live-error', 'live-notice', 'live-status-error', 'live-transcript']
            .map((id) => id + ': ' + (document.getElementById(id)?.textContent || '').trim())"""
    )
    logged = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return f"page: {shown}\nbrowser log: {logged}\n{stack.logs()}"


def test_live_mode_shows_words_as_heard_then_refined_turns_and_links_the_job(
    stack: Stack, browser: WebDriver, microphone: tuple[Path, str]
) -> None:
    _, reference = microphone
    browser.get(stack.base_url)
    browser.execute_script("localStorage.setItem('relisten.apiKey', arguments[0])", KEY)
    browser.get(stack.base_url)
    try:
        browser.find_element(By.ID, "live-start").click()
        # Words appear while the turn is still open: first-pass deltas.
        heard = wait_until(
            browser,
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('#live-transcript .turn .delta')]"
                ".map((n) => n.textContent.trim()).filter(Boolean)"
            ),
            HEARD_TIMEOUT_S,
            "no first-pass words appeared",
        )
        assert heard
        # A finished turn is replaced by its refined words, shaded by confidence.
        wait_until(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#live-transcript .turn[data-state='refined'] .w"),
            REFINED_TIMEOUT_S,
            "no turn was refined",
        )
        doubt = browser.execute_script(
            "return getComputedStyle(document.querySelector(\"#live-transcript .turn[data-state='refined'] .w\"))"
            ".getPropertyValue('--doubt')"
        )
        assert doubt.strip() != ""
        # Let the recording play out, then stop: the last turns are waited for, the job is linked.
        wait_until(
            browser,
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, "#live-transcript .turn[data-state='refined']")) >= 2
            ),
            REFINED_TIMEOUT_S,
            "fewer than two turns were refined",
        )
        browser.save_screenshot(str(SCREENSHOT))
        browser.find_element(By.ID, "live-stop").click()
        link = wait_until(
            browser,
            lambda d: (
                d.find_element(By.ID, "live-job-link")
                if d.find_element(By.ID, "live-job").is_displayed()
                else None
            ),
            REFINED_TIMEOUT_S,
            "the stored job was not linked after Stop",
        )
        assert browser.find_element(By.ID, "live-body").get_attribute("data-state") == "ended"
        text = browser.execute_script(
            "return [...document.querySelectorAll('#live-transcript .turn')].map((turn) => "
            "[...turn.querySelectorAll('.w, .turn-text')].map((n) => n.textContent).join(' ')).join(' ')"
        )
        wer = word_error_rate(reference, text)
        assert wer < MAX_WER, f"WER {wer:.2f}: {text!r}"
        job_id = str(link.get_attribute("href")).split("#/jobs/")[1]
        link.click()
        wait_until(
            browser,
            lambda d: (
                d.find_element(By.ID, "job-body").is_displayed()
                and not d.find_element(By.ID, "live-body").is_displayed()
            ),
            15.0,
            "the job link did not open the job",
        )
        assert job_id
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_explain(browser, stack)}") from exc


def test_live_mode_with_a_refused_key_says_so_and_can_start_again(stack: Stack, browser: WebDriver) -> None:
    browser.get(stack.base_url)
    browser.execute_script("localStorage.setItem('relisten.apiKey', 'not-the-key')")
    browser.get(stack.base_url)
    try:
        browser.find_element(By.ID, "live-start").click()
        error = wait_until(
            browser,
            lambda d: d.find_element(By.ID, "live-error").text.strip() or None,
            UI_TIMEOUT_S,
            "the refusal was not shown",
        )
        assert "invalid_api_key" in error
        # The page asks for another key, and the Live button works again (nothing is left running).
        wait_until(
            browser, lambda d: d.find_element(By.ID, "key-form").is_displayed(), UI_TIMEOUT_S, "no key form"
        )
        wait_until(
            browser,
            lambda d: d.find_element(By.ID, "live-start").is_enabled(),
            UI_TIMEOUT_S,
            "Live stays off",
        )
        assert browser.find_element(By.ID, "live-body").get_attribute("data-state") == "ended"
        assert not browser.find_element(By.ID, "live-job").is_displayed()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_explain(browser, stack)}") from exc
