"""Headless Chromium for the console's browser tests (Debian's ``chromium`` + ``chromium-driver``).

``browser()`` yields a Selenium driver on a fresh profile, with everything that would reach
the network by itself switched off; ``shoot(driver, name)`` writes a screenshot to
``CONNECTOR_SCREENSHOT_DIR`` (default ``test-artifacts/console/`` in the checkout) for a
reviewer to look at. Without Chromium or Selenium the tests skip, saying how to install them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CONNECTOR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CONNECTOR_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL = ("Chromium and its driver are needed: `apt-get install -y chromium chromium-driver` (Debian) and "
           "`pip install -e '.[test]'` (Selenium); set CONNECTOR_CHROMIUM / CONNECTOR_CHROMEDRIVER if they "
           "live elsewhere.")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
         "--no-default-browser-check", "--metrics-recording-only", "--hide-scrollbars")


def screenshot_dir() -> Path:
    default = Path(__file__).resolve().parent.parent / "test-artifacts" / "console"
    path = Path(os.environ.get("CONNECTOR_SCREENSHOT_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def shoot(driver, name: str) -> Path:
    """A screenshot of the whole page (the window grown to its height), as ``name.png``."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 600)")
    driver.set_window_size(width, min(int(height) + 120, 6000))
    path = screenshot_dir() / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    return path


@contextlib.contextmanager
def browser(width: int = 1280, height: int = 900):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(INSTALL)
    webdriver = pytest.importorskip("selenium.webdriver", reason=INSTALL)
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
