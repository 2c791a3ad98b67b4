"""The page at ``/`` in a real headless Chromium (Debian's chromium + chromium-driver, via selenium).

Uploads a real ISIC image, waits for the result, checks the probability, the attention
overlays with their raw ranges and the figure, moves the opacity slider with the keyboard, and
saves a screenshot into the test's tmp folder (its path is printed and recorded as the test
property ``screenshot``). The served model is the tiny test checkpoint; the page says which
model answers.
Skips, saying why, where the browser is not installed; ``.ci/run`` installs it and sets
``ATTNMEL_REQUIRE_BROWSER=1``, which turns that skip into a failure, so CI cannot pass by skipping.
Selenium is given both binaries' paths, so Selenium Manager never runs (nothing is downloaded).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from attnmel.inference import load_model
from attnmel.serving import ServedModel, ServiceSettings, create_app

from .conftest import SAMPLE

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("ATTNMEL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ATTNMEL_CHROMEDRIVER", "/usr/bin/chromedriver")


def _browser_or_skip() -> tuple[str, str]:
    """The absolute paths of Chromium and its driver, or a skip (a failure under ATTNMEL_REQUIRE_BROWSER)."""
    missing = pytest.fail if os.environ.get("ATTNMEL_REQUIRE_BROWSER") else pytest.skip
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing("selenium is not installed (pip install 'attnmel[dev]')")
    found = []
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        resolved = path if Path(path).is_file() else shutil.which(path)
        if not resolved:
            missing(f"{path} not found: install Debian's {package} (apt-get install chromium chromium-driver), "
                    "or set ATTNMEL_CHROMIUM / ATTNMEL_CHROMEDRIVER")
        found.append(str(Path(resolved).absolute()))
    return found[0], found[1]


@pytest.fixture
def server_url(tiny_checkpoint):
    yield from _serve(tiny_checkpoint)


@pytest.fixture
def flagging_server_url(tiny_checkpoint, tmp_path):
    """The tiny model with an OOD detector whose threshold (0) flags every image."""
    from safetensors.torch import load_file

    from attnmel.checkpoints.format import update_metadata

    from .trust_helpers import flagging_detector

    path = Path(shutil.copy(tiny_checkpoint, tmp_path / "flagging.safetensors"))
    update_metadata(path, ood_detector=flagging_detector(load_file(str(path))["classifier.weight"].shape[1]))
    yield from _serve(path)


def _serve(checkpoint):
    import uvicorn

    app = create_app(ServedModel(load_model(checkpoint), str(checkpoint)), ServiceSettings())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def browser(tmp_path):
    chromium, chromedriver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,1500"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    yield driver
    driver.quit()


def test_page_upload_probability_overlays_and_slider(server_url, browser, tmp_path, record_property):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server_url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: "AttnMel-CNN" in d.find_element(By.ID, "model-card").text)
    banner = browser.find_element(By.ID, "model-banner")
    wait.until(lambda d: "Answering" in d.find_element(By.ID, "model-banner").text)
    assert "not a diagnostic tool" in banner.text and "AttnMel-CNN-Lesion (mobilenet_v2)" in banner.text
    card = browser.find_element(By.ID, "model-card").text
    assert "Intended use" in card and "Limitations" in card and "roc auc" in card

    # keyboard: the file input is reachable with Tab, and labelled
    file_input = browser.find_element(By.ID, "file-input")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # skip link
    for _ in range(5):
        if browser.switch_to.active_element == file_input:
            break
        browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element == file_input
    assert browser.find_element(By.CSS_SELECTOR, "label[for=file-input]").text

    image = sorted((SAMPLE / "ISIC-2017_Validation_Data").glob("*.jpg"))[0]
    file_input.send_keys(str(image))
    wait.until(lambda d: d.find_element(By.ID, "results").is_displayed()
               and "P(melanoma)" in d.find_element(By.ID, "probability").text)
    probability = browser.find_element(By.ID, "probability").text
    assert image.name in probability
    value = float(probability.split("=")[1].split()[0])
    assert 0 <= value <= 1
    assert browser.find_element(By.ID, "result-summary").get_attribute("aria-live") == "polite"

    figures = browser.find_elements(By.CSS_SELECTOR, "#maps figure.attention-map")
    assert [f.get_attribute("data-layer") for f in figures] == ["stage3", "stage4"]
    assert all(" to " in f.text for f in figures)  # each map says its own range
    wait.until(lambda d: d.find_element(By.ID, "figure").is_displayed()
               and d.execute_script("return document.getElementById('figure-image').naturalWidth") > 300)
    loaded = browser.execute_script(
        "return [...document.querySelectorAll('#maps img')].map(i => i.complete && i.naturalWidth)")
    assert len(loaded) == 5 and all(width == 64 for width in loaded)  # view + (view, heat map) x 2

    def opacities():
        return browser.execute_script(
            "return [...document.querySelectorAll('#maps img.heat')].map(i => getComputedStyle(i).opacity)")

    assert opacities() == ["0.5", "0.5"]
    slider = browser.find_element(By.ID, "opacity")
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    wait.until(lambda d: opacities() == ["0.7", "0.7"])
    assert browser.find_element(By.ID, "opacity-value").text == "70 %"

    screenshot = tmp_path / "attnmel-page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    record_property("screenshot", str(screenshot))
    print(f"screenshot: {screenshot}")

    # a bad file shows an error in the alert region, and the page keeps working
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    file_input.send_keys(str(bad))
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "not a readable image" in browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "error").get_attribute("role") == "alert"


def test_page_shows_a_plain_warning_instead_of_the_probability_when_out_of_distribution(flagging_server_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(flagging_server_url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: "Answering" in d.find_element(By.ID, "model-banner").text)
    image = sorted((SAMPLE / "ISIC-2017_Validation_Data").glob("*.jpg"))[0]
    browser.find_element(By.ID, "file-input").send_keys(str(image))
    wait.until(lambda d: d.find_element(By.ID, "results").is_displayed()
               and d.find_element(By.ID, "ood-warning").is_displayed())
    warning = browser.find_element(By.ID, "ood-warning")
    assert "does not look like the dermoscopy images" in warning.text and image.name in warning.text
    assert warning.get_attribute("role") == "alert"
    assert not browser.find_element(By.ID, "probability").is_displayed()  # no bold probability
    assert not browser.find_element(By.ID, "probability-table").is_displayed()  # no class-probability table
    assert not browser.find_element(By.ID, "probability-table").find_elements(By.TAG_NAME, "td")
    status = browser.find_element(By.ID, "status").text
    assert "not answered" in status and "P(" not in status  # nor in the status line
    assert "Threshold" in browser.find_element(By.ID, "trust-notes").text
