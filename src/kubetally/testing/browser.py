"""Debian's headless Chromium driven through its own chromedriver (Selenium), for the dashboard
tests. Nothing here downloads a browser or a driver: both must be installed
(``apt-get install chromium chromium-driver``), else :class:`MissingPart`.

Every request the page makes is recorded from Chrome's performance log (the DevTools
``Network.requestWillBeSent`` events), so a test can prove the page talks to nobody but its
own server.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetally.testing import MissingPart

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
HINT = "apt-get install chromium chromium-driver; pip install selenium"
#: No updates, sync, field trials or first-run pings: the only traffic is the page's own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--no-default-browser-check",
)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    for path in paths:
        if Path(path).is_file():
            return path
    return shutil.which(name)


@dataclass
class Browser:
    driver: Any
    #: Every URL the browser requested so far (drained from the performance log).
    requests: list[str] = field(default_factory=list)

    def drain(self) -> list[str]:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
        return self.requests


@contextmanager
def headless_chromium(width: int = 1366, height: int = 900) -> Iterator[Browser]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise MissingPart("selenium", HINT) from None
    binary = _first(CHROMIUM, "chromium")
    driver_path = _first(CHROMEDRIVER, "chromedriver")
    if binary is None:
        raise MissingPart("chromium", HINT)
    if driver_path is None:
        raise MissingPart("chromium-driver", HINT)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # An explicit driver path: Selenium Manager (which could download one) is never run.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
