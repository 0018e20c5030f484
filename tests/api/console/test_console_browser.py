"""The console in a real browser: Debian's Chromium driven by Playwright, against a real
uvicorn server on SQLite. Screenshots of every page go to $OWNERCARE_CONSOLE_SCREENSHOTS
(or the test's tmp dir)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from config.settings import ApiSettings
from storage.keys import KeyStore
from storage.store import Store
from tests.api.console import fleetkit
from tests.apikit import Server

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
TABLET: ViewportSize = {"width": 768, "height": 1024}
WAIT_MS = 20_000  # generous: six engineers share two cores


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the console's browser tests drive Debian's "
                    "Chromium (sudo apt-get install -y chromium; scripts/check-prereqs.sh)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("OWNERCARE_CONSOLE_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'console.sqlite'}")
    fleetkit.seed(store)
    return store


@pytest.fixture
def api(store: Store, kafka_url: str, tmp_path: Path, browser: Browser) -> Iterator[str]:
    with Server(ApiSettings(state_dir=tmp_path, kafka_url=kafka_url), store) as server:
        yield server.url
        for context in browser.contexts:  # their open alert streams, before the server stops
            context.close()


def key(store: Store, role: str) -> str:
    return KeyStore(store).create(f"{role}-1", role)[1]


def sign_in(browser: Browser, api: str, secret: str, viewport: ViewportSize = DESKTOP
            ) -> Page:
    page = browser.new_context(viewport=viewport, base_url=api).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto("/console/queue")
    expect(page).to_have_url(re.compile(r"/console/login$"))  # no session: the form
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/queue$"))
    assert secret not in page.url
    stored = page.evaluate("() => JSON.stringify([localStorage, sessionStorage])")
    assert secret not in stored
    assert secret not in page.evaluate("() => document.cookie")  # and HttpOnly: not even the id
    return page


def test_an_agent_works_a_case_and_sees_a_live_alert(browser: Browser, api: str, store: Store,
                                                      shots: Path) -> None:
    page = sign_in(browser, api, key(store, "agent"))
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("critical")  # earliest due: the shortest SLA
    expect(rows.first).to_contain_text(fleetkit.VINS[0])
    expect(rows.first.locator(".countdown")).to_contain_text("left")
    expect(page.locator("#live-alerts")).to_have_attribute("data-connected", "true")

    # A new alert, written as the worker's alert sink writes it, arrives without a reload.
    store.upsert_alert(fleetkit.battery_alert(fleetkit.VINS[3], 4, severity="critical"))
    expect(page.locator("#live-alerts li").first).to_contain_text(fleetkit.VINS[3])
    expect(rows).to_have_count(4)
    expect(page.locator("#queue")).to_contain_text(fleetkit.VINS[3])
    page.screenshot(path=shots / "queue.png")
    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.keyboard.press("Enter")
    expect(page.locator(":focus")).to_have_id("main")

    # Filters swap the table in place and give the page its own address.
    page.get_by_label("Severity").select_option("critical")
    expect(page).to_have_url(re.compile(r"/console/queue\?state=open&severity=critical$"))
    expect(rows).to_have_count(2)
    page.get_by_label("Severity").select_option("")
    expect(rows).to_have_count(4)

    page.get_by_role("link", name="#1", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Case #1")
    chart = page.locator("svg.chart").first
    expect(chart).to_be_visible()
    expect(chart.locator("line.onset")).to_have_count(1)
    expect(chart.locator("line.failure")).to_have_count(1)
    expect(chart.locator("line.level")).to_have_count(2)
    expect(page.locator(".action").first).to_contain_text("Call the owner")
    page.screenshot(path=shots / "case.png", full_page=True)

    page.get_by_label("Move to").select_option("acknowledged")
    page.get_by_label("Note (optional)").fill("Owner called, booked a battery test")
    page.get_by_role("button", name="Apply transition").click()
    expect(page.locator("#case-state")).to_have_text("acknowledged")
    expect(page.locator(".timeline")).to_contain_text("Owner called, booked a battery test")
    assert store.engine  # the store saw it too: the API's own detail agrees
    detail = page.request.get(f"{api}/cases/1", headers={"X-API-Key": key(store, "viewer")})
    assert detail.json()["state"] == "acknowledged"
    assert detail.json()["events"][-1]["actor"] == "agent-1"

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto("/console/queue")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.screenshot(path=shots / "login.png")


def test_an_ota_manager_pauses_a_campaign(browser: Browser, api: str, store: Store,
                                         shots: Path) -> None:
    manager = key(store, "ota_manager")
    campaign = fleetkit.ota_campaign(api, {"X-API-Key": manager})
    page = sign_in(browser, api, manager)
    page.get_by_role("link", name="OTA").click()
    page.get_by_role("link", name="bms 2.0").click()
    expect(page.locator("#campaign-state")).to_have_text("running")
    page.screenshot(path=shots / "campaign.png", full_page=True)
    page.get_by_label("Reason (recorded in the campaign log)").fill("call-centre spike")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#campaign-state")).to_have_text("paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    found = page.request.get(f"{api}/ota/campaigns/{campaign}", headers={"X-API-Key": manager})
    assert (found.json()["state"], found.json()["pause_reason"]) == ("paused",
                                                                     "call-centre spike")
    # An OTA manager does not work cases: the case page offers no case forms.
    page.goto("/console/cases/1")
    expect(page.get_by_role("button", name="Apply transition")).to_have_count(0)
    page.goto("/console/ota")
    page.screenshot(path=shots / "campaigns.png")


def test_a_viewer_sees_no_write_controls_and_the_server_refuses_them(
        browser: Browser, api: str, store: Store) -> None:
    campaign = fleetkit.ota_campaign(api, {"X-API-Key": key(store, "ota_manager")})
    page = sign_in(browser, api, key(store, "viewer"))
    page.goto("/console/cases/1")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Case #1")
    expect(page.locator("main form")).to_have_count(0)
    page.goto(f"/console/ota/{campaign}")
    expect(page.locator("#campaign-state")).to_have_text("running")
    expect(page.locator("main form")).to_have_count(0)
    expect(page.get_by_role("link", name="Webhooks")).to_have_count(0)  # admin only
    # A forged write with the viewer's own valid session and CSRF token: refused.
    csrf = page.locator("header input[name=csrf]").get_attribute("value")
    assert csrf
    forged: list[tuple[str, dict[str, str | float | bool]]] = [
        ("/console/cases/1/transition", {"to": "acknowledged", "csrf": csrf}),
        (f"/console/ota/{campaign}/pause", {"csrf": csrf}),
        ("/console/cases/1/notes", {"text": "hi", "csrf": csrf})]
    for path, form in forged:
        refused = page.request.post(path, form=form, max_redirects=0)
        assert refused.status == 403, (path, refused.text())
    assert page.request.get("/console/webhooks", max_redirects=0).status == 403
    detail = page.request.get(f"{api}/cases/1", headers={"X-API-Key": key(store, "viewer")})
    assert detail.json()["state"] == "new"


def test_a_write_without_the_csrf_token_is_refused(browser: Browser, api: str,
                                                   store: Store) -> None:
    page = sign_in(browser, api, key(store, "admin"))
    forms: list[dict[str, str | float | bool]] = [{"to": "acknowledged"},
                                                  {"to": "acknowledged", "csrf": "forged"}]
    for form in forms:
        refused = page.request.post("/console/cases/1/transition", form=form, max_redirects=0)
        assert refused.status == 403
        assert "CSRF" in refused.json()["detail"]
    refused = page.request.post("/console/logout", max_redirects=0)
    assert refused.status == 403  # signing out is a write too
    page.goto("/console/cases/1")
    expect(page.locator("#case-state")).to_have_text("new")


def test_every_page_renders_at_desktop_and_tablet_width(browser: Browser, api: str,
                                                        store: Store, shots: Path) -> None:
    manager = key(store, "ota_manager")
    fleetkit.ota_campaign(api, {"X-API-Key": manager})
    page = sign_in(browser, api, key(store, "admin"))
    pages = {"fleet": "/console/fleet", "vehicles": "/console/vehicles",
             "vehicle": f"/console/vehicles/{fleetkit.VINS[0]}",
             "chargers": "/console/chargers", "charger": f"/console/chargers/{fleetkit.CHARGER}",
             "webhooks": "/console/webhooks", "quality": "/console/quality"}
    for name, path in pages.items():
        answer = page.goto(path)
        assert answer is not None
        assert answer.status == 200, name
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        page.screenshot(path=shots / f"{name}.png", full_page=name != "vehicle")
    page.goto(f"/console/vehicles/{fleetkit.VINS[0]}")
    expect(page.locator("svg.spark")).not_to_have_count(0)
    expect(page.get_by_role("link", name="bms 2.0")).to_be_visible()  # its OTA state
    page.screenshot(path=shots / "vehicle.png")
    tablet = sign_in(browser, api, key(store, "agent"), TABLET)
    no_overflow = "() => document.documentElement.scrollWidth <= window.innerWidth"
    assert tablet.evaluate(no_overflow)
    expect(tablet.get_by_role("link", name="#1", exact=True)).to_be_visible()
    tablet.screenshot(path=shots / "queue-tablet.png")
    tablet.goto("/console/cases/1")
    assert tablet.evaluate(no_overflow)
    tablet.screenshot(path=shots / "case-tablet.png")
