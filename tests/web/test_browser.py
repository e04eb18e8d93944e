"""The dashboard in a real browser (headless Chromium through Selenium) against a real daemon and
the CrateQ simulator: log in through the one-time link, search and download, watch the progress
bar move to `done`, pause and resume, preview and backfill a rule, list and audit the library,
and look right at 375 px and 1440 px, light and dark.

Needs Debian's `chromium` and `chromium-driver` (CI installs them). Screenshots go to
$PD_SCREENSHOT_DIR, else the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .conftest import KIB, Dashboard, started

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver)",
    ),
    pytest.mark.timeout(240),
]
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
T = TypeVar("T")


class Browser:
    """A headless Chromium; every method blocks, so tests call them through `run`."""

    def __init__(self, profile: Path) -> None:
        options = Options()
        assert CHROMIUM is not None and CHROMEDRIVER is not None
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument("--window-size=1440,900")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    def quit(self) -> None:
        self.driver.quit()

    def wait(self, condition: Callable[[Any], T], timeout_s: float = 30.0, message: str = "") -> T:
        return WebDriverWait(
            self.driver,
            timeout_s,
            poll_frequency=0.05,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(condition, message)

    def find(self, css: str, timeout_s: float = 30.0) -> WebElement:
        return self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css), timeout_s)

    def click(self, css: str, timeout_s: float = 30.0) -> None:
        """Click what `css` finds, again if the page redrew it in between (a live list does)."""

        def clicked(driver: Any) -> bool:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return True

        self.wait(clicked, timeout_s)

    def show(self, view: str) -> None:
        self.driver.execute_script("window.scrollTo(0, 0)")
        self.driver.find_element(By.CSS_SELECTOR, f'nav a[href="#{view}"]').click()
        self.wait(
            lambda d: d.find_element(By.TAG_NAME, "h1").text == view.capitalize(),
            message=f"the {view} view did not show",
        )

    def viewport(self, width: int, height: int, *, dark: bool = False) -> None:
        """A window whose page area is `width` CSS px wide, in the given colour scheme."""
        self.driver.set_window_size(width, height)
        inner = int(self.driver.execute_script("return window.innerWidth"))
        if inner != width:  # a window frame takes its share: make up for it
            self.driver.set_window_size(2 * width - inner, height)
        assert self.driver.execute_script("return window.innerWidth") == width
        self.driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
        )
        assert (
            self.driver.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches")
            == dark
        )

    def overflow_px(self) -> int:
        """How far the page is wider than the window (0: nothing to scroll sideways)."""
        return int(
            self.driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
        )

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking browser call, off the event loop that serves the daemon."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
def screens(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PD_SCREENSHOT_DIR") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def browser(request: pytest.FixtureRequest, screens: Path) -> AsyncIterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="pdchrome-"))
    b = await run(Browser, profile)
    try:
        yield b
    finally:
        # What the page looked like at the end, for whoever reads a failure.
        await run(b.driver.save_screenshot, str(screens / f"last-{request.node.name}.png"))
        await run(b.quit)
        shutil.rmtree(profile, ignore_errors=True)


async def logged_in(dashboard: Dashboard, browser: Browser) -> None:
    """Open a fresh one-time link, as `poolctl ui` would, and land on the overview."""
    await dashboard.client.post("/v1/pools/crateq/sync", {"full": True})
    link = await dashboard.client.post("/v1/ui/login-link")
    await run(browser.driver.get, link["url"])
    await run(browser.wait, lambda d: d.current_url == dashboard.origin + "/")
    await run(browser.find, 'tr td[data-label="Pool"] strong')
    assert await run(lambda: browser.driver.find_element(By.TAG_NAME, "h1").text) == "Overview"
    await run(browser.find, ".live.on")  # the event stream is connected


async def test_search_download_and_watch_the_progress_bar_reach_done(
    dashboard: Dashboard, browser: Browser, screens: Path
) -> None:
    await logged_in(dashboard, browser)
    track = (await dashboard.client.get("/v1/catalog", {"limit": "1"}))["items"][0]
    media_id = int(track["id"])
    # Slow enough to watch: ~100 KiB/s per connection for a file of 600-900 KiB.
    dashboard.crateq.faults.throttle_bps = 100 * KIB

    await run(browser.show, "search")
    query = await run(browser.find, 'input[name="q"]')
    await run(query.send_keys, track["title"], Keys.ENTER)  # the keyboard submits the form
    row = f'tr[data-ref="{track["ref"]}"]'
    download = await run(browser.find, row + ' button[data-action="download"]')
    assert await run(lambda: download.text) == "Download"
    await run(download.send_keys, Keys.ENTER)  # a real <button>: Enter presses it
    await run(
        browser.wait, lambda d: d.find_element(By.CSS_SELECTOR, row + " button").text == "Queued"
    )

    await run(browser.show, "jobs")
    (job,) = (await dashboard.client.get("/v1/jobs"))["items"]
    assert job["ref"] == track["ref"]
    bar_css = f'tr[data-job="{job["id"]}"] progress'
    seen: set[float] = set()

    def bar_moves(driver: Any) -> bool:
        bar = driver.find_element(By.CSS_SELECTOR, bar_css)
        value, top = float(bar.get_property("value")), float(bar.get_property("max"))
        if 0 < value < top:
            seen.add(value)
        return len(seen) >= 2

    await run(browser.wait, bar_moves)
    await run(browser.viewport, 1440, 900)
    await run(browser.driver.save_screenshot, str(screens / "jobs-1440-light.png"))
    await run(browser.viewport, 375, 812, dark=True)
    await run(browser.driver.save_screenshot, str(screens / "jobs-375-dark.png"))
    assert await run(browser.overflow_px) <= 0
    done_row = f'tr[data-job="{job["id"]}"][data-state="done"]'
    await run(browser.find, done_row, 60.0)
    bar = await run(browser.find, done_row + " progress")
    assert await run(bar.get_property, "value") == await run(bar.get_property, "max")

    finished = await dashboard.client.get(f"/v1/jobs/{job['id']}")
    assert finished["state"] == "done"
    path = Path(finished["path"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == dashboard.crateq.sha256(media_id)
    assert await run(browser.console_errors) == []  # no CSP violation, no script error


async def test_pause_and_resume_a_download_from_the_jobs_page(
    dashboard: Dashboard, browser: Browser
) -> None:
    await logged_in(dashboard, browser)
    dashboard.crateq.faults.throttle_bps = 48 * KIB
    ref = f"crateq:{dashboard.crateq.catalog.ids()[3]}"
    answer = await dashboard.client.post("/v1/jobs", {"refs": [ref]})
    job_id = answer["accepted"][0]["job"]
    await run(browser.show, "jobs")
    row = f'tr[data-job="{job_id}"]'
    await run(browser.click, row + '[data-state="downloading"] button[data-action="pause"]')
    await run(browser.find, row + '[data-state="paused"]')
    assert await dashboard.job_state(job_id) == "paused"
    dashboard.crateq.faults.throttle_bps = None  # the rest comes at full speed
    await run(browser.click, row + ' button[data-action="resume"]')
    await run(browser.find, row + '[data-state="done"]', 60.0)
    assert await dashboard.job_state(job_id) == "done"
    assert await run(browser.console_errors) == []


async def test_every_view_fits_a_phone_and_a_wide_screen_in_light_and_dark(
    dashboard: Dashboard, browser: Browser, screens: Path
) -> None:
    await logged_in(dashboard, browser)
    await dashboard.client.post(
        "/v1/jobs", {"refs": [f"crateq:{dashboard.crateq.catalog.ids()[1]}"]}
    )
    for width, height in ((375, 812), (1440, 900)):
        for dark in (False, True):
            await run(browser.viewport, width, height, dark=dark)
            for view in ("overview", "jobs", "search", "rules", "library", "settings"):
                await run(browser.show, view)
                assert await run(browser.overflow_px) <= 0, (view, width)
            await run(browser.show, "search")
            query = await run(browser.find, 'input[name="q"]')
            await run(query.send_keys, Keys.ENTER)
            await run(browser.find, "#results table")
            scheme = "dark" if dark else "light"
            await run(browser.driver.save_screenshot, str(screens / f"search-{width}-{scheme}.png"))
            assert await run(browser.overflow_px) <= 0, ("search results", width)
    # The keyboard: the first Tab reaches the skip link, which moves focus to the content.
    await run(browser.driver.get, dashboard.origin + "/#jobs")
    await run(browser.driver.refresh)  # a fresh page: nothing has focus yet
    await run(browser.find, "table#jobs")
    active = "return [document.activeElement.tagName, document.activeElement.className]"

    def first_tab(driver: Any) -> list[str] | None:
        # On a loaded machine the key can arrive before the fresh page takes keyboard focus
        # and is lost: nothing gets focus. Only then is it sent again; a Tab that focused
        # anything else than the skip link fails the assertion below.
        ActionChains(driver).send_keys(Keys.TAB).perform()
        now: list[str] = driver.execute_script(active)
        return None if now[0] == "BODY" else now

    assert await run(browser.wait, first_tab, 30.0, "no Tab reached the page") == ["A", "skip"]
    await run(browser.driver.switch_to.active_element.send_keys, Keys.ENTER)
    await run(
        browser.wait, lambda d: d.execute_script("return document.activeElement.id") == "main"
    )
    await run(browser.driver.refresh)  # #main in the address bar still opens a view
    await run(browser.find, "main h1")
    # The features still in progress elsewhere say so instead of failing.
    await run(browser.show, "rules")
    assert "No rules configured." in await run(
        lambda: browser.driver.find_element(By.ID, "main").text
    )
    await run(browser.show, "settings")
    text = await run(lambda: browser.driver.find_element(By.ID, "main").text)
    assert "********" in text and dashboard.crateq.user.password not in text
    assert await run(browser.console_errors) == []


async def test_signing_out_and_a_used_link_show_how_to_sign_in(
    dashboard: Dashboard, browser: Browser
) -> None:
    link = (await dashboard.client.post("/v1/ui/login-link"))["url"]
    await run(browser.driver.get, link)
    await run(browser.find, ".live.on")
    await run(browser.click, "#logout")
    await run(browser.wait, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Signed out")
    assert "poolctl ui" in await run(lambda: browser.driver.find_element(By.ID, "main").text)
    await run(browser.driver.refresh)  # the cookie is worth nothing now
    await run(browser.find, "main.signin")
    await run(browser.driver.get, link)  # and the link was used already
    body = await run(browser.find, "main.signin")
    assert "poolctl ui" in await run(lambda: body.text)


RULE = """
[[rules]]
name = "house"
genre = ["House"]
"""
#: Where the lead looks at two of the screenshots (besides $PD_SCREENSHOT_DIR).
SHARED_SCREENS = Path("/work/screens")


@pytest.fixture
async def ruled(tmp_path: Path) -> AsyncIterator[Dashboard]:
    """The dashboard's daemon with one rule: House tracks."""
    async with started(tmp_path, RULE) as dash:
        yield dash


async def jobs_done(dashboard: Dashboard, ids: set[int], timeout_s: float = 60.0) -> None:
    """Wait until every job in `ids` is `done` (a failed one fails the test at once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = {i: await dashboard.job_state(i) for i in ids}
        assert not {i: s for i, s in states.items() if s in ("failed", "cancelled")}, states
        if all(state == "done" for state in states.values()):
            return
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.1)


async def snapshot(
    browser: Browser, screens: Path, name: str, *, at: str | None = None, shared: bool = False
) -> None:
    """A screenshot from the page's top, or with `at` (CSS) scrolled into view."""
    if at is None:
        await run(browser.driver.execute_script, "window.scrollTo(0, 0)")
    else:
        element = await run(browser.find, at)
        await run(browser.driver.execute_script, "arguments[0].scrollIntoView()", element)
    await run(browser.driver.save_screenshot, str(screens / name))
    if shared:
        SHARED_SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screens / name, SHARED_SCREENS / name)


async def test_a_rule_previews_and_backfills_and_the_library_audits_what_landed(
    ruled: Dashboard, browser: Browser, screens: Path
) -> None:
    dashboard = ruled
    await logged_in(dashboard, browser)  # the first sync: the back catalog, which feeds no rule
    assert (await dashboard.client.get("/v1/jobs"))["total"] == 0
    house = (await dashboard.client.get("/v1/catalog", {"genre": "House", "limit": "100"}))["items"]
    assert len(house) >= 2
    # One House track is downloaded by name first: the preview marks it, the backfill skips it.
    first = (await dashboard.client.post("/v1/jobs", {"refs": [house[0]["ref"]]}))["accepted"]
    await jobs_done(dashboard, {first[0]["job"]})

    await run(browser.show, "rules")
    row = 'tr[data-rule="house"]'
    await run(browser.find, row)
    cells = await run(
        lambda: [c.text for c in browser.driver.find_elements(By.CSS_SELECTOR, row + " td")]
    )
    assert cells[:6] == ["house", "0", "0", "0", "0", "never"]
    preview_button = await run(browser.find, row + ' button[data-action="preview"]')
    await run(preview_button.send_keys, Keys.ENTER)  # the keyboard opens the preview
    preview = "#rule-detail table tbody tr"
    await run(browser.wait, lambda d: len(d.find_elements(By.CSS_SELECTOR, preview)) == len(house))
    # The keyboard lands on what it opened.
    focused = "return document.activeElement.textContent"
    assert await run(browser.driver.execute_script, focused) == "Preview: house"
    shown = await run(
        lambda: {
            r.get_attribute("data-ref"): r.get_attribute("data-in-library")
            for r in browser.driver.find_elements(By.CSS_SELECTOR, preview)
        }
    )
    assert shown == {t["ref"]: ("yes" if t["ref"] == house[0]["ref"] else "no") for t in house}
    detail = await run(lambda: browser.driver.find_element(By.ID, "rule-detail").text)
    assert f"{len(house)} tracks in the mirror match" in detail and "in library" in detail
    await run(browser.viewport, 1440, 900)
    await snapshot(browser, screens, "rules-1440-light.png", shared=True)
    assert await run(browser.overflow_px) <= 0

    # Backfill asks first: opening it and cancelling starts nothing.
    backfill = row + ' button[data-action="backfill"]'
    await run(browser.click, backfill)
    await run(browser.click, 'button[data-action="cancel-backfill"]')
    await run(browser.wait, lambda d: not d.find_elements(By.CSS_SELECTOR, "form.confirm"))
    await run(browser.click, backfill)
    await run(browser.find, "form.confirm")
    assert (await dashboard.client.get("/v1/jobs"))["total"] == 1
    await run(browser.viewport, 375, 812, dark=True)
    await snapshot(browser, screens, "rules-375-dark.png", at="#rule-detail")
    assert await run(browser.overflow_px) <= 0
    # The date is sent: nothing in the mirror is dated 2099 or later.
    since = await run(browser.find, 'form.confirm input[name="since"]')
    await run(browser.driver.execute_script, "arguments[0].value = '2099-01-01'", since)
    await run(browser.click, 'button[data-action="confirm-backfill"]')
    answer = await run(browser.find, "#rule-detail p[data-queued]")
    assert (await run(lambda: answer.text)).startswith("0 queued, 0 skipped")
    assert (await dashboard.client.get("/v1/jobs"))["total"] == 1
    await run(browser.click, backfill)  # a fresh form, no date: the whole mirror
    await run(browser.click, 'button[data-action="confirm-backfill"]')
    answer = await run(browser.find, "#rule-detail p[data-queued]")
    text = await run(lambda: answer.text)
    assert text.startswith(f"{len(house) - 1} queued, 1 skipped"), text

    ruled_jobs = [
        job
        for job in (await dashboard.client.get("/v1/jobs", {"limit": "100"}))["items"]
        if job["origin"] == "rule:house"
    ]
    assert sorted(job["ref"] for job in ruled_jobs) == sorted(t["ref"] for t in house[1:])
    await run(
        browser.wait,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, row + ' td[data-label="Queued"]').text
            == str(len(house) - 1)
        ),
    )
    await run(browser.show, "jobs")
    for job in ruled_jobs:
        await run(browser.find, f'tr[data-job="{job["id"]}"]')
    await jobs_done(dashboard, {job["id"] for job in ruled_jobs})

    # The library lists what landed, and an audit checks it.
    await run(browser.show, "library")
    files = "#library-list tbody tr"
    await run(browser.wait, lambda d: len(d.find_elements(By.CSS_SELECTOR, files)) == len(house))
    landed = (await dashboard.client.get(f"/v1/jobs/{first[0]['job']}"))["path"]
    await run(browser.find, f'#library-list tr[data-path="{landed}"][data-state="downloaded"]')
    await run(browser.click, 'button[data-action="audit"]')
    await run(
        browser.wait,
        lambda d: d.find_element(By.ID, "library-answer").text.startswith("Audit: "),
    )
    said = await run(lambda: browser.driver.find_element(By.ID, "library-answer").text)
    match = re.match(r"Audit: (\d+) checked, (\d+) ok, 0 deleted, 0 lost\.", said)
    assert match and int(match[1]) >= 1 and match[1] == match[2], said
    await run(browser.find, "#last-audit")
    assert "quick audit" in await run(lambda: browser.driver.find_element(By.ID, "last-audit").text)
    await snapshot(browser, screens, "library-375-dark.png", shared=True)
    assert await run(browser.overflow_px) <= 0
    dupes = await run(lambda: browser.driver.find_element(By.ID, "library-duplicates").text)
    assert (await dashboard.client.get("/v1/library/duplicates"))["items"] == []
    assert dupes.startswith("None")  # three versions of one song: no two files alike

    # A damaged file: the full audit finds it lost, the filter shows it, Heal fetches it again.
    media_id = int(first[0]["ref"].split(":")[1])
    with open(landed, "r+b") as damaged:
        damaged.seek(os.path.getsize(landed) // 2)
        byte = damaged.read(1)
        damaged.seek(-1, os.SEEK_CUR)
        damaged.write(bytes([byte[0] ^ 0xFF]))
    await run(browser.click, 'button[data-action="audit-full"]')
    await run(
        browser.wait,
        lambda d: d.find_element(By.ID, "library-answer").text.startswith("Full audit: "),
    )
    said = await run(lambda: browser.driver.find_element(By.ID, "library-answer").text)
    assert said == f"Full audit: {len(house)} checked, {len(house) - 1} ok, 0 deleted, 1 lost."
    state = await run(browser.find, '#main select[name="state"]')
    await run(Select(state).select_by_value, "lost")
    await run(browser.click, "#main form.filters button[type=submit]")
    await run(browser.wait, lambda d: len(d.find_elements(By.CSS_SELECTOR, files)) == 1)
    await run(browser.find, f'#library-list tr[data-path="{landed}"][data-state="lost"]')
    await run(browser.click, 'button[data-action="heal"]')
    await run(
        browser.wait,
        lambda d: (
            d.find_element(By.ID, "library-answer").text == "Heal: 1 download requested, 0 skipped."
        ),
    )
    deadline = time.monotonic() + 60
    while (await dashboard.client.get("/v1/library", {"state": "lost"}))["total"]:
        assert time.monotonic() < deadline, "the healed file did not come back"
        await asyncio.sleep(0.1)
    assert hashlib.sha256(Path(landed).read_bytes()).hexdigest() == dashboard.crateq.sha256(
        media_id
    )
    # The page follows on its own (the event stream): the lost count is back to 0.
    lost = '#library-summary .card[data-state="lost"] b'
    await run(browser.wait, lambda d: d.find_element(By.CSS_SELECTOR, lost).text == "0")
    await run(Select(state).select_by_value, "")  # every state again
    await run(browser.click, "#main form.filters button[type=submit]")
    await run(browser.wait, lambda d: len(d.find_elements(By.CSS_SELECTOR, files)) == len(house))
    await run(browser.viewport, 1440, 900)
    await snapshot(browser, screens, "library-1440-light.png")
    assert await run(browser.overflow_px) <= 0

    await run(browser.show, "overview")
    line = await run(browser.find, "#library-line")
    assert (await run(lambda: line.text)).startswith(f"{len(house)} downloaded")
    held = await run(lambda: browser.driver.find_element(By.ID, "downloads-held").text)
    assert held == "No schedule window in force · no DJ app running"
    assert await run(browser.console_errors) == []
