"""The web page at ``/`` in a real headless Chromium, against the real services: upload a real
recording, watch it complete, see the corrections and the confidence shading, click a word to play
the audio from there (and save the screenshot the README shows); with API keys set, the page asks
for a key and then works with it. Plus a browserless check of how the page's files are served.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (skipped, saying so, without them).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from relisten_ingest import web
from relisten_ingest.api import install_error_handlers
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from relisten.dataset import long_form_recordings
from relisten.services import SERVICES
from relisten.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot-web.png"
RECORDING = "chapter-1688-142285"  # a real recording whose first pass gets corrected
JOB_TIMEOUT_S = 300.0
UI_TIMEOUT_S = 30.0
VIEWPORT = (1440, 1000)

in_browser = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason=f"needs a headless Chromium: {CHROMIUM} and {CHROMEDRIVER} (Debian packages chromium and chromium-driver)",
)

T = TypeVar("T")


def chromium(user_data_dir: Path, extra_arguments: tuple[str, ...] = ()) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # Offline machine: without these Chromium keeps trying to reach Google's services.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        f"--user-data-dir={user_data_dir}",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        *extra_arguments,
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    # The viewport itself (not the window around it) at a fixed size, for a stable screenshot.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False},
    )
    driver.set_page_load_timeout(60)
    return driver


def wait_until(
    driver: WebDriver, condition: Callable[[WebDriver], T | None], timeout_s: float, what: str
) -> T:
    """Poll ``condition`` until it returns something truthy; an element replaced by a re-render
    in between counts as not yet."""

    def check(d: WebDriver) -> T | None:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return None

    return cast(T, WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(check, message=what))


@contextmanager
def explained(driver: WebDriver, stack: Stack) -> Iterator[None]:
    """A failure also tells what the page showed, what the browser logged and the services' logs."""
    try:
        yield
    except (AssertionError, WebDriverException) as exc:
        try:
            shown = driver.execute_script(
                """return ['job-status', 'job-live', 'job-error', 'upload-error', 'upload-status', 'jobs-error']
                    .map((id) => id + ': ' + (document.getElementById(id)?.textContent || '').trim())"""
            )
            logged = driver.get_log("browser")  # type: ignore[no-untyped-call]
        except WebDriverException as browser_gone:
            shown, logged = [f"(browser unreachable: {browser_gone.msg})"], []
        raise AssertionError(f"{exc}\npage: {shown}\nbrowser log: {logged}\n{stack.logs()}") from exc


def jobs_loaded(driver: WebDriver) -> bool:
    """The job list has been fetched, without an error."""
    return (
        driver.find_element(By.ID, "jobs").get_attribute("aria-busy") is None
        and not driver.find_element(By.ID, "jobs-error").is_displayed()
    )


def severe_entries(driver: WebDriver) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry for entry in entries if entry.get("level") == "SEVERE"]


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(nats_url, tmp_path_factory.mktemp("stack")).start(SERVICES)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with tempfile.TemporaryDirectory(prefix="relisten-chromium-") as profile:
        driver = chromium(Path(profile))
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def recording_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recording = next(r for r in long_form_recordings(include_sonnets=False) if r.name == RECORDING)
    path = tmp_path_factory.mktemp("upload") / f"{RECORDING}.wav"
    path.write_bytes(recording.wav_bytes())
    return path


def test_the_page_and_its_files_are_served_from_the_package() -> None:
    """No stack, no browser: every file the page refers to is served with its type, nothing comes
    from another host (the page must work offline), and only the page's own files are served."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(web.router)
    client = TestClient(app)

    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.head("/").status_code == 200

    expected_types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    referenced = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text))
    for module in web.STATIC_DIR.glob("*.js"):
        referenced |= {f"/static/{name}" for name in re.findall(r'from "\./([^"]+)"', module.read_text())}
    assert {"/static/app.js", "/static/app.css", "/static/api.js", "/static/live.js"} <= referenced
    for path in sorted(referenced):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(expected_types[Path(path).suffix]), path

    for file in [web.WEB_DIR / "index.html", *web.STATIC_DIR.iterdir()]:
        assert not re.search(
            r"(?:https?:)?//(?!www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]{2,}/", file.read_text()
        ), file

    for outside in ("/static/../web.py", "/static/..%2fweb.py", "/static/nothing.js", "/static/"):
        response = client.get(outside)
        assert response.status_code == 404, outside
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.e2e
@pytest.mark.nats
@in_browser
def test_upload_a_recording_and_explore_its_transcript(
    stack: Stack, browser: WebDriver, recording_path: Path
) -> None:
    with explained(browser, stack):
        upload_and_explore(browser, stack.base_url, recording_path)


def upload_and_explore(driver: WebDriver, base_url: str, recording_path: Path) -> None:
    driver.get(f"{base_url}/")
    # get() can return before a loaded machine has parsed the document: wait for it, don't assume it.
    wait_until(driver, lambda d: d.title == "relisten" or None, UI_TIMEOUT_S, "the page loads")
    wait_until(driver, jobs_loaded, UI_TIMEOUT_S, "the job list loads")

    # Choose the file (what the hidden input gets from a click or a drop) and upload it.
    driver.find_element(By.ID, "file").send_keys(str(recording_path))
    chosen = driver.find_element(By.ID, "drop-file")
    wait_until(driver, lambda d: recording_path.name in chosen.text, UI_TIMEOUT_S, "file chosen")
    driver.find_element(By.ID, "upload-button").click()

    # The new job is selected and listed, then followed live until it is done.
    wait_until(driver, lambda d: d.find_element(By.ID, "job-body").is_displayed(), 120, "job selected")
    assert recording_path.name in driver.find_element(By.ID, "job-title").text
    wait_until(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#jobs .job-item[aria-current="true"]'),
        UI_TIMEOUT_S,
        "job listed",
    )
    status = wait_until(
        driver,
        lambda d: (
            (s := d.find_element(By.ID, "job-status").get_attribute("data-status")) in {"completed", "failed"}
            and s
        ),
        JOB_TIMEOUT_S,
        "the job finishes",
    )
    assert status == "completed", driver.find_element(By.ID, "job-error").text
    wait_until(
        driver,
        lambda d: (
            d.find_element(By.ID, "transcript-kind").text == "final"
            and d.find_elements(By.CSS_SELECTOR, "#stats .stat")
        ),
        UI_TIMEOUT_S,
        "final transcript",
    )

    # Every word is a span shaded by its confidence.
    words = driver.find_elements(By.CSS_SELECTOR, "#transcript .w[data-index]")
    assert len(words) > 50
    shading: list[list[str]] = driver.execute_script(
        """return [...document.querySelectorAll('#transcript .w[data-index]')].map(
            (w) => [w.getAttribute('style') || '', w.style.getPropertyValue('--doubt'),
                    getComputedStyle(w).backgroundColor])"""
    )
    assert all("--doubt" in style for style, _, _ in shading), shading[:5]
    doubts = [float(doubt) for _, doubt, _ in shading]
    assert all(0.0 <= d <= 1.0 for d in doubts), doubts[:10]
    assert max(doubts) > 0.3, "some words should be shaded as doubtful"
    shaded = [background for _, doubt, background in shading if float(doubt) > 0.3]
    assert all(background.startswith("rgba(") and not background.endswith(", 0)") for background in shaded)
    if driver.find_elements(By.CSS_SELECTOR, '#corrections .correction[data-status="accepted"]'):
        assert driver.find_elements(By.CSS_SELECTOR, "#transcript .w.second"), "re-listened words are marked"

    # At least one correction, shown as before → after with its status.
    corrections = driver.find_elements(By.CSS_SELECTOR, "#corrections .correction")
    assert corrections
    for correction in corrections:
        assert correction.get_attribute("data-status") in {"accepted", "rejected", "unresolved"}
        assert correction.find_element(By.CSS_SELECTOR, ".badge").text == correction.get_attribute(
            "data-status"
        )
    diffs = [
        diff
        for diff in driver.find_elements(By.CSS_SELECTOR, "#corrections .correction .diff")
        if diff.is_displayed() and "→" in diff.text
    ]
    assert diffs, "no correction is shown as before → after"
    changed = [
        (
            diff.find_element(By.CSS_SELECTOR, ".before").text,
            diff.find_element(By.CSS_SELECTOR, ".after").text,
        )
        for diff in diffs
    ]
    assert any(before != after for before, after in changed), changed
    assert driver.find_element(By.CSS_SELECTOR, "#corrections-count").is_displayed()

    # A click on a word plays the audio from that word's start.
    target: WebElement = words[len(words) // 4]
    start = float(target.get_attribute("data-start") or "nan")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    target.click()
    wait_until(
        driver,
        lambda d: (
            "playing" in (target.get_attribute("class") or "")
            or abs(float(d.execute_script("return document.getElementById('player').currentTime")) - start)
            < 1.0
        ),
        UI_TIMEOUT_S,
        "seek",
    )
    position = float(driver.execute_script("return document.getElementById('player').currentTime"))
    assert start - 0.05 <= position <= start + 2.0, (position, start)
    driver.execute_script("document.getElementById('player').pause()")
    time.sleep(0.3)

    # The picture for the README: the finished job, one word playing.
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0); document.getElementById('transcript').scrollTop = 0")
    assert driver.save_screenshot(str(SCREENSHOT))

    assert severe_entries(driver) == [], "the page logged errors"


@pytest.mark.e2e
@pytest.mark.nats
@in_browser
def test_the_page_asks_for_an_api_key_and_uses_it(nats_url: str, tmp_path: Path, browser: WebDriver) -> None:
    """Ingest alone is enough here: the job list is what needs the key."""
    keyed = Stack(nats_url, tmp_path, extra_env={"RELISTEN_INGEST_API_KEYS": "sesame,other"}).start(
        ("ingest",)
    )
    try:
        driver = browser
        driver.get(f"{keyed.base_url}/")
        key_input = driver.find_element(By.ID, "api-key")
        wait_until(driver, lambda d: key_input.is_displayed(), UI_TIMEOUT_S, "the page asks for a key")
        key_input.send_keys("sesame")
        driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
        wait_until(
            driver,
            lambda d: (
                not d.find_element(By.ID, "key-form").is_displayed()
                and d.find_element(By.ID, "key-forget").is_displayed()
                and jobs_loaded(d)
            ),
            UI_TIMEOUT_S,
            "the job list loads with the key",
        )
        assert driver.execute_script("return localStorage.getItem('relisten.apiKey')") == "sesame"
        assert not driver.find_element(By.ID, "jobs-error").is_displayed()
        # The first, keyless request was refused (the browser logs that 401); nothing else failed.
        unexpected = [e for e in severe_entries(driver) if "401" not in str(e.get("message"))]
        assert unexpected == []
    finally:
        keyed.stop()
