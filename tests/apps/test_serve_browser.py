"""streamrnn serve in a real browser: headless Chromium (Debian's chromium + chromedriver,
driven by selenium) opens the pages. The speech page hears a fake microphone playing
spoken digits (``--use-file-for-fake-audio-capture``) and must list them; the forecast
page must draw the replayed series and keep updating. Each test saves a screenshot of its
page in out/screenshots/ (ignored by git; serve-speech.png, serve-forecast.png); the
copies in docs/ that README shows are updated by hand from there.

The expected digits come from the demo's clip list (FSDD file names), not from the model.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from _data import demo_clips, demo_digits

from streamrnn.adapters.audio import WavSource, write_wav
from streamrnn.apps.serve import BackgroundServer, ServeConfig
from streamrnn.apps.speech import demo_path

SHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"  # git-ignored
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _browser(user_dir: str, audio: str | None = None):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail("chromium and chromium-driver are not installed (.ci/run installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1100,860",
                "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={user_dir}"):
        opts.add_argument(arg)
    if audio is not None:
        opts.add_argument("--use-fake-ui-for-media-stream")
        opts.add_argument("--use-fake-device-for-media-stream")
        opts.add_argument(f"--use-file-for-fake-audio-capture={audio}")
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def _wait(driver, script: str, ok, timeout: float):
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if ok(value):
            return value
        time.sleep(0.1)
    return value


def _run_speech_page(seconds: float | None, shot: str | None) -> tuple[list[int], list[int]]:
    """The speech page with the demo's first ``seconds`` (all if None) as its microphone;
    returns (digits shown, digits expected)."""
    clips = demo_clips()
    x = WavSource(demo_path()).read()
    if seconds is not None:
        clips = [c for c in clips if c["end_s"] + 0.3 < seconds]
        x = x[: int(seconds * 8000)]
    expected = demo_digits(clips)
    tmp = tempfile.mkdtemp(prefix="streamrnn-browser-")
    try:
        wav = str(Path(tmp) / "mic.wav")
        # a second of silence after the words, so a looping fake device pauses between
        write_wav(wav, np.concatenate([x, np.zeros(8000, np.float32)]), 8000)
        with BackgroundServer(ServeConfig(apps=("speech",), port=0)) as server:
            driver = _browser(str(Path(tmp) / "profile"), audio=wav)
            try:
                driver.get(server.url + "/")
                driver.find_element("id", "start").click()
                count = "return Number(document.getElementById('digits').dataset.count)"
                _wait(driver, count, lambda n: n >= len(expected), 25 + len(x) / 8000)
                shown = driver.execute_script(
                    "return document.getElementById('digits').dataset.digits")
                frames = driver.execute_script("return Number(document.body.dataset.frames)")
                if shot is not None:
                    SHOTS.mkdir(parents=True, exist_ok=True)
                    driver.save_screenshot(str(SHOTS / shot))
            finally:
                driver.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert frames > 100  # the page drew the spectrogram and posteriors it was sent
    return [int(d) for d in shown.split()][: len(expected)], expected


def test_speech_page_shows_the_digits_spoken_into_the_microphone():
    shown, expected = _run_speech_page(3.9, "serve-speech.png")  # the first three words
    assert len(expected) == 3 and shown == expected


@pytest.mark.slow
def test_speech_page_whole_demo():
    shown, expected = _run_speech_page(None, "serve-speech.png")
    assert shown == expected == demo_digits()


def test_forecast_page_draws_and_updates():
    tmp = tempfile.mkdtemp(prefix="streamrnn-browser-")
    try:
        with BackgroundServer(ServeConfig(apps=("forecast",), port=0)) as server:
            driver = _browser(str(Path(tmp) / "profile"))
            try:
                driver.get(server.url + "/?speed=100")
                rows = "return Number(document.body.dataset.rows)"
                first = _wait(driver, rows, lambda n: n >= 150, 20)
                image = "return document.getElementById('chart').toDataURL()"
                before = driver.execute_script(image)
                later = _wait(driver, rows, lambda n: n >= first + 40, 20)
                after = driver.execute_script(image)
                mae = driver.find_element("id", "mae").text
                naive = driver.find_element("id", "naive").text
                blank = driver.execute_script(
                    "const c = document.createElement('canvas'); c.width = 1000;"
                    "c.height = 320; return c.toDataURL()")
                SHOTS.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(SHOTS / "serve-forecast.png"))
            finally:
                driver.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert first >= 150 and later >= first + 40  # rows keep coming back
    assert before != blank and after != before  # the chart is drawn, and it moves
    assert float(mae) > 0 and float(naive) > 0  # both scored on the rows so far
