"""The dashboard at /ui, in a real browser (Debian's chromium, headless, driven by Selenium through Debian's
chromedriver) against a real ``cloudherd serve`` and real local nodes.  Each step leaves a screenshot in
``test-artifacts/dashboard/`` (or ``$CLOUDHERD_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import REPO, node_folders, wait_until
from pg_harness import free_port
from server_harness import SPEC, Served, create, ready_nodes, serving

from cloudherd.state.repo import Store
from cloudherd.times import utcnow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("CLOUDHERD_TEST_ARTIFACTS") or REPO / "test-artifacts") / "dashboard"


@pytest.fixture
def served(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("CLOUDHERD_WEBHOOK_ATTEMPTS", "1")  # a notification refused once is given up at once
    with serving(home, tmp_path, interval=1) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if webdriver is None or CHROMIUM is None or DRIVER is None:
        reason = "needs selenium, chromium and chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the dashboard tests: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--no-proxy-server", "--disable-background-networking"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Steps:
    """Screenshots, numbered in the order they are taken."""

    def __init__(self, driver: Any, test: str = "") -> None:
        self.driver, self.count, self.prefix = driver, 0, f"{test}-" if test else ""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> None:
        self.count += 1
        self.driver.save_screenshot(str(ARTIFACTS / f"{self.prefix}{self.count:02d}-{name}.png"))


def _rows(driver: Any) -> dict[str, str]:
    """The nodes table as the page shows it: node name -> state (read in one script: the page re-renders
    itself live, so elements found one call earlier may be gone)."""
    return dict(driver.execute_script(
        "var m = {}; document.querySelectorAll('#nodes tbody tr').forEach("
        "function (r) { m[r.dataset.node] = r.dataset.state; }); return m;"))


def _text(driver: Any, css: str) -> str:
    return str(driver.execute_script("var e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                                     css))


def _type(driver: Any, css: str, text: str) -> None:
    """Type ``text`` into the field ``css`` selects, again from empty if a live re-render replaced it."""
    from selenium.common.exceptions import ElementNotInteractableException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def typed() -> bool:
        try:
            field = driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(text)
            return bool(driver.find_element(By.CSS_SELECTOR, css).get_attribute("value") == text)
        except (StaleElementReferenceException, ElementNotInteractableException):
            return False  # replaced by a live re-render, or its page still loading

    wait_until(typed, 10, f"typing into {css}")


def _click(driver: Any, css: str) -> None:
    """Click what ``css`` selects, again if a live re-render replaced it in between."""
    from selenium.common.exceptions import ElementNotInteractableException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return True
        except (StaleElementReferenceException, ElementNotInteractableException):
            return False

    wait_until(clicked, 10, f"a click on {css}")


def _accessible_name(driver: Any, css: str) -> str:
    """The browser's accessible name of what ``css`` selects, read again if a live re-render replaced the element
    between finding it and asking (the page's first live update may come at any moment), or if the browser has
    not named the new element yet (an empty name: seen once in a clean-clone CI, read mid re-render)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    found: list[str] = []

    def read() -> bool:
        try:
            found.append(driver.find_element(By.CSS_SELECTOR, css).accessible_name)
        except StaleElementReferenceException:
            return False
        return bool(found[-1])

    wait_until(read, 10, f"the accessible name of {css}")
    return found[-1]


def _login(driver: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/ui")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#infrastructures"), 10, "the list of infrastructures")


def _same_page(driver: Any) -> bool:
    """True while the page loaded before is still the one shown (a reload would drop the marker)."""
    return bool(driver.execute_script("return window.__cloudherdMarker === 42"))


def test_the_dashboard_shows_a_fleet_live_and_acts_on_it(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    steps = Steps(browser)
    token = served.token()
    api = served.client(token)
    # three failed checks in a row make a node failed: one is unhealthy first, for the page to show
    spec = SPEC.replace("unhealthy_after: 1", "unhealthy_after: 3\n      timeout: 1s")
    infra_id = create(api, "dash", count=3, spec=spec)

    # a bad token: the login page again, with the reason
    browser.get(f"{served.url}/ui")
    assert browser.find_element(By.ID, "token")
    browser.find_element(By.ID, "token").send_keys("chd_nosuch_token")
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: "not valid" in _text(browser, "#login-error"), 10, "the login page to say why")
    steps.shot("bad-token")

    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#infrastructures tr[data-name='dash']"), 10,
               "the list of infrastructures")
    row = _text(browser, "#infrastructures tr[data-name='dash']")
    assert "3 / 3" in row and "ready" in row
    cookie = browser.get_cookie("cloudherd_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    steps.shot("infrastructures")

    _click(browser, "#infrastructures tr[data-name='dash'] a")
    wait_until(lambda: len(_rows(browser)) == 3, 10, "three nodes on the page")
    assert set(_rows(browser).values()) == {"ready"}
    steps.shot("three-nodes")

    # scale +1: the fourth node appears without a reload
    _click(browser, "#groups tr[data-group='web'] button.scale[data-change='+1']")
    wait_until(lambda: "web: 3 → 4" in _text(browser, "#message"), 10, "the scale message")
    browser.execute_script("window.__cloudherdMarker = 42")
    wait_until(lambda: list(_rows(browser).values()).count("ready") == 4, 120, "a fourth ready node on the page")
    assert _same_page(browser) and "dash-web-4" in _rows(browser)
    steps.shot("scaled-to-four")

    # a node's sshd killed: it turns dead, and its replacement appears, all while the page is open
    victim = "dash-web-2"
    os.kill(int((node_folders(served.home)[victim] / "sshd.pid").read_text().split()[0]), signal.SIGKILL)
    seen: set[str] = set()

    def replaced() -> bool:
        rows = _rows(browser)
        seen.add(rows.get(victim, "gone"))
        return victim not in rows and list(rows.values()).count("ready") == 4

    wait_until(replaced, 120, f"{victim} to go and a replacement to be ready, on the page")
    assert _same_page(browser)
    # the page showed it going: in the nodes table, or (when the manager retired it within one refresh) in the
    # event log it renders live
    events = _text(browser, "#events")
    assert seen & {"dead", "unhealthy", "failed", "terminating"} or f"{victim}: dead" in events, (seen, events)
    assert "dash-web-5" in _rows(browser)
    # and it stays in sight, with why it went
    wait_until(lambda: "machine is gone" in _text(browser, f"#retired tr[data-node='{victim}'] .why"), 10,
               f"{victim} among the retired, with why")
    steps.shot("replaced")

    # a node that hangs (every process stopped, as a frozen machine) turns unhealthy on the page, then is
    # retired as failed and replaced, without a reload
    frozen = "dash-web-3"
    served.cli("local", "fault", frozen, "hang")
    states: list[str] = []

    def frozen_replaced() -> bool:
        rows = _rows(browser)
        state = rows.get(frozen, "gone")
        if not states or states[-1] != state:
            states.append(state)
        return frozen not in rows and list(rows.values()).count("ready") == 4
    wait_until(frozen_replaced, 120, f"the hung {frozen} to turn unhealthy and be replaced, on the page")
    assert "unhealthy" in states and states[-1] == "gone", states
    why = _text(browser, f"#retired tr[data-node='{frozen}'] .why")
    assert "health check failed 3 time(s)" in why, why
    assert _same_page(browser) and "dash-web-6" in _rows(browser)
    steps.shot("hung-and-replaced")
    # the picture: each series a step line over time, drawn from the event log, ending at what is now
    wait_until(lambda: "desired 4" in _text(browser, "figure.plot[data-group='web'] figcaption"), 30, "the plot")
    legend = _text(browser, "figure.plot[data-group='web'] figcaption")
    assert "total 4" in legend and "healthy 4" in legend, legend
    totals = browser.execute_script("return document.querySelector(\"figure.plot[data-group='web'] "
                                    "polyline.series-total\").getAttribute('points')").split()
    assert len(totals) >= 3  # it moved (3 → 4, the replacement) before it settled

    # a node's actions with their output
    _click(browser, "#nodes tr[data-node='dash-web-6'] a")
    wait_until(lambda: "hello.sh" in _text(browser, "section.action h3"), 10, "its actions")
    assert _text(browser, "section.action .exit") == "0"
    steps.shot("node-actions")

    # a form posted without its CSRF token is refused, even with the login cookie
    forged = httpx.post(f"{served.url}/ui/infrastructures/{infra_id}/scale", data={"group": "web", "change": "+1"},
                        cookies={"cloudherd_session": token}, follow_redirects=False)
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert len([n for n in api.get(f"/v1/infrastructures/{infra_id}/nodes").json()]) == 4

    # destroy, confirmed by the infrastructure's name
    # back by the page's own link: a browser.back() may restore the page from its cache and reload it (the page's
    # script does so to reopen its stream) while the test already types into it
    _click(browser, "a.up")
    wait_until(lambda: browser.find_elements(By.ID, "destroy"), 10, "the destroy button")
    _click(browser, "#destroy")
    wait_until(lambda: "type dash to confirm" in _text(browser, "#message"), 10, "a refusal without the name")
    _type(browser, "#confirm", "dash")
    _click(browser, "#destroy")
    wait_until(lambda: "being torn down" in _text(browser, "#message"), 10, "the destroy message")
    browser.execute_script("window.__cloudherdMarker = 42")
    try:
        wait_until(lambda: _text(browser, "#infra-state") == "destroyed", 120, "destroyed, on the page")
    except AssertionError:
        steps.shot("not-destroyed")
        raise AssertionError(f"{browser.current_url}: {_text(browser, '#main')[:3000]} "
                             f"{api.get(f'/v1/infrastructures/{infra_id}').json()}") from None
    assert _same_page(browser) and _rows(browser) == {}
    steps.shot("destroyed")
    assert node_folders(served.home) == {}


RELEASE = SPEC.replace("echo hello from $CLOUDHERD_NODE > greeting.txt", "echo release {release} on $CLOUDHERD_NODE") \
    .replace("    max: 4\n", "    max: 4\n    update: {{max_unavailable: 1, min_healthy_seconds: 0s}}\n")


def _revisions(driver: Any) -> dict[int, str]:
    return {int(k): v for k, v in driver.execute_script(
        "var m = {}; document.querySelectorAll('#revisions tbody tr').forEach("
        "function (r) { m[r.dataset.revision] = r.dataset.state; }); return m;").items()}


def test_a_release_is_rolled_back_from_the_page(served: Served, browser: Any) -> None:
    """Two releases made over the REST routes; the page rolls back to the first, and the node runs it again."""
    from selenium.webdriver.common.by import By

    steps = Steps(browser, "rollback")
    api = served.client(served.token())
    made = api.post("/v1/infrastructures", headers={"Content-Type": "application/yaml"},
                    content=RELEASE.format(name="roll", release="one").replace("count: 2", "count: 1"))
    assert made.status_code == 201, made.text
    infra_id = str(made.json()["id"])
    wait_until(lambda: ready_nodes(api, infra_id), 120, "a ready node")
    answer = api.post("/v1/infrastructures", params={"converge": "true"}, headers={"Content-Type": "application/yaml"},
                      content=RELEASE.format(name="roll", release="two").replace("count: 2", "count: 1"))
    assert answer.status_code == 200, answer.text
    wait_until(lambda: [(r["number"], r["state"]) for r in api.get(f"/v1/infrastructures/{infra_id}/revisions")
                        .json()] == [(1, "applied"), (2, "applied")], 120, "release two applied")

    login = served.token()  # the browser's own: revoked at the end
    _login(browser, served.url, login)
    _click(browser, "#infrastructures tr[data-name='roll'] a")
    wait_until(lambda: _revisions(browser) == {1: "applied", 2: "applied"}, 10, "two revisions on the page")
    steps.shot("two-releases")
    browser.execute_script("window.__cloudherdMarker = 42")
    _click(browser, "#revisions tr[data-revision='1'] button")
    wait_until(lambda: "rolling back to revision 1" in _text(browser, "#message"), 10, "the rollback message")
    browser.execute_script("window.__cloudherdMarker = 42")
    wait_until(lambda: _revisions(browser).get(3) == "applied", 120, "revision 3 applied, on the page")
    assert _same_page(browser)
    steps.shot("rolled-back")

    _click(browser, "#nodes tbody tr a")
    wait_until(lambda: _text(browser, "section.action .stdout"), 10, "the node's actions")
    assert _text(browser, "section.action .stdout").startswith("release one on roll-web-"), \
        _text(browser, "section.action .stdout")  # the newest action: release one's script, run again
    assert "release two on" in _text(browser, "#main")  # and release two's before it
    steps.shot("node-after-rollback")

    # the node's page is live too: a rollback to release two over the REST routes shows its new run here
    browser.execute_script("window.__cloudherdMarker = 42")
    job = api.post(f"/v1/infrastructures/{infra_id}/rollback", json={"revision": 2})
    assert job.status_code == 202, job.text
    wait_until(lambda: _text(browser, "section.action .stdout").startswith("release two on"), 120,
               "release two's new run on the open node page")
    assert _same_page(browser) and len(browser.find_elements(By.CSS_SELECTOR, "section.action")) == 4
    steps.shot("node-live")

    # the browser's token revoked while the page is open: the page goes back to the login, saying why
    served.cli("token", "revoke", login.split("_")[1])  # by its key id, the part after chd_
    wait_until(lambda: "no longer valid" in _text(browser, "#login-error"), 30, "the login page, saying why")
    assert browser.get_cookie("cloudherd_session") is None
    steps.shot("revoked")
    assert api.delete(f"/v1/infrastructures/{infra_id}").status_code == 202


METERED = """\
name: {name}
groups:
  web:
    count: 0
    min: 0
    max: 4
    metrics:
      queue: {{command: 'echo 1'}}
    scaling:
      policies:
        - {{metric: queue, target: 40, warmup: 1h}}
"""
# the metric plot as the browser lays it out: the boxes of the svg, of its samples' line and of its target's line
LAID_OUT = """
var figure = document.querySelector(arguments[0]);
if (!figure) { return null; }
function box(e) { var r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
var line = figure.querySelector("polyline.samples");
return {svg: box(figure.querySelector("svg")), samples: box(line),
        target: box(figure.querySelector("line.level-target")), points: line.points.numberOfItems};
"""


def test_a_group_s_metric_is_plotted_and_follows_new_samples(served: Served, browser: Any) -> None:
    """Samples written as the manager's passes write them (the group has no node: the server's passes add none);
    the page draws them against the policy's target, says the latest value and its accessible name, and a new
    sample redraws the plot without a reload.  No screenshot: the browser's layout boxes are checked."""
    api = served.client(served.token())
    infra_id = create(api, "metered", count=0, spec=METERED)
    store = Store()
    start = utcnow() - timedelta(minutes=1)
    for i, value in enumerate([10.0, 60.0, 30.0]):
        store.add_samples(infra_id, [("web", "queue", value, 1)], at=start + timedelta(seconds=10 * i))

    _login(browser, served.url, served.token())
    _click(browser, "#infrastructures tr[data-name='metered'] a")
    figure = "figure.metric-plot[data-group='web'][data-metric='queue']"
    wait_until(lambda: "latest 30" in _text(browser, f"{figure} figcaption"), 10, "the metric's plot")
    drawn = browser.execute_script(LAID_OUT, figure)
    svg, samples, target = drawn["svg"], drawn["samples"], drawn["target"]
    assert drawn["points"] == 3
    assert svg[0] <= samples[0] < samples[2] <= svg[2] and svg[1] <= samples[1] < samples[3] <= svg[3], drawn
    assert samples[1] < target[1] < samples[3], drawn  # 40 between the lowest sample (10) and the highest (60)
    name = _accessible_name(browser, f"{figure} svg")
    assert name.startswith("web: queue") and "latest 30" in name and "target 40" in name, name

    browser.execute_script("window.__cloudherdMarker = 42")
    store.add_samples(infra_id, [("web", "queue", 90.0, 1)])
    store.engine.dispose()
    wait_until(lambda: "latest 90" in _text(browser, f"{figure} figcaption"), 30, "the new sample on the open page")
    assert _same_page(browser) and browser.execute_script(LAID_OUT, figure)["points"] == 4
    assert api.delete(f"/v1/infrastructures/{infra_id}").status_code == 202


def test_a_node_s_page_shows_why_it_exists(served: Served, browser: Any) -> None:
    """A replacement's page: made ← the retirement of the node it replaces ← the check that found that one dead,
    in the manager's pass (the screenshot is the README's docs/node-why.png)."""
    from selenium.webdriver.common.by import By

    steps = Steps(browser, "why")
    token = served.token()
    infra_id = create(served.client(token), "causes", count=2)
    hook = served.client(token).post("/v1/notifications", json={"url": f"http://127.0.0.1:{free_port()}/hook",
                                                                "infrastructure": infra_id, "events": ["node.made"]})
    assert hook.status_code == 201, hook.text  # nothing listens there: the replacement's notification is refused
    victim = "causes-web-1"
    os.kill(int((node_folders(served.home)[victim] / "sshd.pid").read_text().split()[0]), signal.SIGKILL)
    api = served.client(token)
    wait_until(lambda: "causes-web-3" in {n["name"] for n in ready_nodes(api, infra_id)}, 120,
               "a replacement ready")
    _login(browser, served.url, token)
    browser.get(f"{served.url}/ui/infrastructures/{infra_id}/nodes/causes-web-3")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#why li"), 10, "the chain of causes")
    kinds = browser.execute_script(
        "return Array.from(document.querySelectorAll('#why li')).map(function (li) { return li.dataset.kind; });")
    assert kinds == ["made", "retired", "health"]
    chain = _text(browser, "#why")
    assert "causes-web-3 made and deployed" in chain and f"{victim} retired (dead" in chain
    assert "in manager pass (fence " in chain
    steps.shot("node-why")

    wait_until(lambda: api.get("/v1/notifications").json()[0]["failed"] == 1, 60, "the notification given up")
    browser.get(f"{served.url}/ui/infrastructures/{infra_id}")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#notifications"), 10, "the given-up notification")
    assert " ".join(_text(browser, "#notifications").split()) == (
        "notifications: 1 given up (cloudherd notify deliveries says why; cloudherd notify retry sends them again)")
