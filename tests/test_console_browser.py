"""The operator console in a real browser: headless Chromium against the app served on loopback.

Sign in with the keyboard, see the watch, open its account page (the chart), open the hook,
count a replay and confirm it, then check the receiver got the same webhook ids again. Each
page is saved as a screenshot (``CONNECTOR_SCREENSHOT_DIR``, default ``test-artifacts/console/``),
and no page loads anything from another origin.
"""

from __future__ import annotations

import re
import time

from connector.config import DAY
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.console_browser import browser, shoot
from tests.test_console import ADMIN, HOOKS
from tests.trigger_kit import HANDLE, dumpling, make_due, receiver, trigger_settings, verify, world  # noqa: F401


def _on_page(driver, heading: str, wait: float = 30) -> None:
    """Wait until the page whose ``<h1>`` holds ``heading`` has loaded (a click returns before)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, wait, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        lambda d: heading in d.find_element(By.TAG_NAME, "h1").text
        and d.execute_script("return document.readyState") == "complete")


def _same_origin_only(driver, origin: str) -> None:
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(origin + "/") for url in loaded), loaded
    assert driver.execute_script("return document.images.length") == 0


def test_sign_in_see_a_watch_open_a_hook_replay_and_see_the_chart(serve, dumpling, receiver, world,  # noqa: F811
                                                                   sqlite_url):
    clock = ManualClock(time.time() - 4 * DAY)
    live = serve(trigger_settings(dumpling, sqlite_url, admin_key=ADMIN, clock=clock))
    svc = live.services
    raw, _ = svc.keys.create(name="acme-zaps", credits=1000)
    svc.keys.create(name="out-of-credits", credits=0)
    with live.client(raw) as api:
        hook = api.post(HOOKS, json={"event": "new_follower", "handle": HANDLE, "targetUrl": receiver.url,
                                     "requestSource": "ZAPIER"}).json()
    for burst in (3, 1, 0, 6):                          # four days of new followers
        world.add_followers(HANDLE, burst)
        make_due(svc)
        poll_due_watches(svc)
        deliver_due_webhooks(svc)
        clock.advance(DAY)
    clock.now = time.time()
    make_due(svc)                                       # and a poll now: the worker is keeping up
    poll_due_watches(svc)
    sent = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(sent) == 10

    with browser() as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(live.url + "/console/")
        _on_page(driver, "Sign in")
        assert driver.current_url.startswith(live.url + "/console/login")
        field = driver.switch_to.active_element                 # the key field has the focus
        assert field.get_attribute("id") == "admin-key"
        assert driver.find_element(By.CSS_SELECTOR, "label[for=admin-key]").text == "Admin key"
        shoot(driver, "01-sign-in")
        field.send_keys("tc_not-the-admin-key-at-all" + Keys.ENTER)
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"))
        assert "not the admin key" in driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
        driver.find_element(By.ID, "admin-key").send_keys(ADMIN + Keys.ENTER)

        _on_page(driver, "Overview")
        assert "Keeping up" in driver.page_source
        _same_origin_only(driver, live.url)
        shoot(driver, "02-overview")

        driver.find_element(By.LINK_TEXT, "Watches").click()
        _on_page(driver, "Watches")
        row = driver.find_element(By.XPATH, f"//tbody/tr[th/a[text()='@{HANDLE}']]")
        assert "dumpling" in row.text and "active" in row.text
        shoot(driver, "03-watches")

        row.find_element(By.LINK_TEXT, f"@{HANDLE}").click()
        _on_page(driver, f"@{HANDLE}")
        chart = driver.find_element(By.CSS_SELECTOR, "svg.chart")
        assert chart.get_attribute("role") == "img" and chart.size["width"] > 300
        desc = driver.find_element(By.ID, "chart-desc").get_attribute("textContent")
        assert "10 new followers detected" in desc
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")) == 3 + 1   # three days, legend
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "ul.followers a")]
        assert links and all(re.fullmatch(r"https://www\.tiktok\.com/@[a-z0-9_.]+", href) for href in links)
        _same_origin_only(driver, live.url)
        shoot(driver, "04-account")

        driver.find_element(By.LINK_TEXT, "Hooks").click()
        _on_page(driver, "Hooks")
        driver.find_element(By.LINK_TEXT, hook["id"]).click()
        _on_page(driver, hook["id"])
        attempts = driver.find_elements(By.XPATH, "//section[h2='Recent attempts']//tbody/tr")
        assert len(attempts) == 10 and all(" 200 " in f" {row.text} " for row in attempts)
        shoot(driver, "05-hook")

        driver.find_element(By.XPATH, "//button[starts-with(text(), 'Count events to replay')]").click()
        _on_page(driver, "Replay hook")
        count = driver.find_element(By.ID, "replay-count").text
        assert count.startswith("10 deliveries of events detected since"), count
        shoot(driver, "06-replay-confirm")
        assert len(receiver.requests) == 10                      # counting sent nothing

        driver.find_element(By.XPATH, "//button[text()='Replay 10 deliveries']").click()
        _on_page(driver, f"Hook {hook['id']}")
        assert "10 deliveries queued again" in driver.find_element(By.CSS_SELECTOR, "[role=status]").text
        shoot(driver, "07-replayed")
        deliver_due_webhooks(svc)
        again = receiver.requests[10:]
        assert {r.headers["webhook-id"] for r in again} == sent and len(again) == 10
        for received in again:
            verify(hook["secret"], received.headers, received.body)

        driver.set_window_size(390, 844)                          # a phone
        driver.find_element(By.LINK_TEXT, f"@{HANDLE}").click()
        _on_page(driver, f"@{HANDLE}")
        assert driver.find_element(By.CSS_SELECTOR, "svg.chart").size["width"] <= 390
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"
        shoot(driver, "08-account-phone")

        driver.find_element(By.XPATH, "//button[text()='Sign out']").click()
        _on_page(driver, "Sign in")
        assert "Signed out." in driver.page_source
        driver.get(live.url + "/console/hooks")
        _on_page(driver, "Sign in")
