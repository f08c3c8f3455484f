"""`interlock dashboard` in a real headless browser (Debian's chromium, driven by selenium through
Debian's chromedriver): the page loads; a service created after it opened appears among the
routes, a bad label appears as a problem (its value shown as text, never as markup), and the
route's request count rises while traffic flows, all without the page reloading."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.swarm import HTTP, INTERLOCK, get, lb, poll, service, unique, until_routed

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard(interlock: None) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([INTERLOCK, "dashboard", "--listen", f"127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}/"
    try:
        poll(lambda: requests.get(url, timeout=2).ok or None, what="the dashboard to answer", timeout=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("INTERLOCK_REQUIRE_SWARM"):
            pytest.fail("chromium and chromium-driver are required (scripts/setup --swarm installs them)")
        pytest.skip("no chromium/chromedriver")
    # Never let selenium look for a browser or driver on the network: the system's are given.
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, what: str, condition: Callable[[WebDriver], object], timeout: float = 60) -> None:
    """Poll `condition` in the page until it holds (a deadline, not a sleep)."""
    WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(WebDriverException,)).until(
        condition, f"timed out waiting for {what}"
    )


def appears(driver: WebDriver, selector: str, what: str) -> WebElement:
    """The element `selector` finds, once the page shows one."""
    wait(driver, what, lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    return driver.find_element(By.CSS_SELECTOR, selector)


def cell(driver: WebDriver, host: str, name: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f'tr.route[data-host="{host}"] td.{name}').text)


def test_the_page_follows_the_swarm_and_the_traffic_without_reloading(dashboard: str, browser: WebDriver) -> None:
    browser.get(dashboard)
    assert browser.title == "Interlock"
    wait(browser, "the page to connect its event stream", lambda d: d.find_element(By.ID, "live").text == "live")
    # The core's status follows the page's own first answer (a placeholder until it came).
    appears(browser, "div.cluster", "the clusters")
    browser.execute_script("window.interlockMarker = 42")

    name = unique("dash")
    host = f"{name}.local"
    with service(name, labels=lb(hosts=host, port="8080")):
        # A service created after the page opened appears among its routes.
        row = appears(browser, f'tr.route[data-host="{host}"]', f"{host} among the routes")
        assert name in row.text

        # A bad label appears as a problem; its value is shown as text, not as markup.
        bad = unique("dash-bad")
        hostile = "<b>x</b>;y"
        with service(bad, labels=lb(hosts=hostile, port="8080")):
            problem = appears(browser, f'tr.problem[data-service="{bad}"]', f"{bad} among the problems")
            assert hostile in problem.text and "not allowed" in problem.text, problem.text
            assert not problem.find_elements(By.TAG_NAME, "b")

        # Request counts rise while traffic flows.
        until_routed(host, port=HTTP, what=f"{host} routed")
        session = requests.Session()
        for _ in range(30):
            assert get(host, session=session).status_code == 200
        wait(browser, f"{host}'s request count to reach 30", lambda d: int(cell(d, host, "requests")) >= 30)
        first = int(cell(browser, host, "requests"))
        for _ in range(30):
            assert get(host, session=session).status_code == 200
        wait(
            browser,
            f"{host}'s request count to rise past {first}",
            lambda d: int(cell(d, host, "requests")) >= first + 30,
        )
        # The rate covers the last ten whole seconds: it shows from the next reading on.
        wait(browser, f"{host}'s request rate", lambda d: float(cell(d, host, "rps")) > 0)
        assert cell(browser, host, "share-5xx") == "0.0%"

    # Everything above happened in the page as first loaded.
    assert browser.execute_script("return window.interlockMarker") == 42
