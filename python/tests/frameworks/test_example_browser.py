"""The example app (examples/devices) driven end to end in headless Chromium:
two browser profiles are two devices of one user. Screenshots of every step
land in test-output/frameworks/browser/."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers: list[Any] = []

    def start(name: str) -> Any:
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1000,800",
        ):
            opts.add_argument(flag)
        profile = tmp_path / f"profile-{name}"
        profile.mkdir()
        opts.add_argument(f"--user-data-dir={profile}")
        opts.add_argument(f"--user-agent=Mozilla/5.0 (X11; Linux x86_64) Chrome/120 {name}")
        d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
        d.set_page_load_timeout(30)
        drivers.append(d)
        return d

    yield start
    for d in drivers:
        d.quit()


def test_two_devices_log_out_everywhere_else(example_app: str, browser: Callable[[str], Any], output_dir: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def until(d: Any, cond: Callable[[Any], Any], what: str) -> Any:
        """Wait (generously: the machine may be loaded) for the page to get there.
        A poll can find an element of the page being left (the home page's
        #cart before the add's redirect lands) and read it after it went:
        that is "not there yet", not a failure."""
        wait = WebDriverWait(d, 20, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
        return wait.until(cond, message=what)

    def texts(d: Any, by: str, value: str) -> str:
        return " ".join(e.text for e in d.find_elements(by, value))

    shots = output_dir / "browser"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    step = [0]

    def shot(d: Any, what: str) -> None:
        step[0] += 1
        d.save_screenshot(str(shots / f"{step[0]:02d}-{what}.png"))

    def sign_in(d: Any, name: str) -> None:
        d.get(example_app + "/")
        assert "/login" in d.current_url
        shot(d, f"{name}-login-page")
        d.find_element(By.ID, "user").send_keys("alice")
        d.find_element(By.ID, "password").send_keys("demo")
        d.find_element(By.ID, "signin").click()
        until(d, lambda d: "Hello" in texts(d, By.ID, "hello"), "the home page after signing in")
        shot(d, f"{name}-signed-in")

    a = browser("device-A")
    b = browser("device-B")
    sign_in(a, "device-A")
    sign_in(b, "device-B")

    # the session page keeps data per device
    a.find_element(By.ID, "item").send_keys("teapot")
    a.find_element(By.ID, "add").click()
    until(a, lambda d: "teapot" in texts(d, By.ID, "cart"), "the cart with the teapot")
    shot(a, "device-A-cart")

    # both devices in "your devices", each marked from its own side
    for d, name, other in ((a, "device-A", "device-B"), (b, "device-B", "device-A")):
        d.get(example_app + "/devices")
        rows = d.find_elements(By.CSS_SELECTOR, "tr.device")
        assert len(rows) == 2, d.page_source
        current = d.find_element(By.CSS_SELECTOR, "tr.device.current").text
        assert name in current and "this device" in current
        assert other in d.find_element(By.ID, "devices").text
        assert "127.0.0.1" in current
        shot(d, f"{name}-devices")

    # A logs out everywhere else: A keeps one device, B lands on the login page with the reason
    a.find_element(By.ID, "logout-others").click()
    until(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.device")) == 1, "one device left")
    assert "this device" in a.find_element(By.CSS_SELECTOR, "tr.device").text
    shot(a, "device-A-after-logout-everywhere-else")

    b.get(example_app + "/devices")
    message = b.find_element(By.ID, "message").text
    assert "log out everywhere else" in message, message
    assert b.find_elements(By.ID, "signin"), "B is on the login page"
    shot(b, "device-B-signed-out-with-reason")
    b.get(example_app + "/")
    assert "/login" in b.current_url, "B stays signed out (its cookie was deleted)"

    # A logs out this device
    a.find_element(By.ID, "logout").click()
    until(a, lambda d: "You signed out." in texts(d, By.ID, "message"), "the login page after logging out")
    shot(a, "device-A-logged-out")
    a.get(example_app + "/devices")
    assert "/login" in a.current_url

    assert len(list(shots.glob("*.png"))) == step[0] >= 10
