"""What the infrastructure page sets on a running fleet, through its own forms (login cookie, CSRF token): a
group's processes suspended and resumed, a node protected from scale-in and put in standby and back.  A real
`cloudherd serve` with a local group of two nodes; what each form did is read back from the page and from the
native API.  A forged post (no CSRF token, a wrong one, no login) changes nothing; a state the page has no colour
for (the lifecycle hooks' waiting and draining) renders plain."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import wait_until
from server_harness import Served, create, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("choices")
    with serving(folder / "home", folder, interval=30) as running:
        yield running


@pytest.fixture(scope="module")
def fleet(served: Served, token: str) -> str:
    with served.client(token) as api:
        return create(api, "choices")


@pytest.fixture
def api(served: Served, token: str) -> Iterator[httpx.Client]:
    with served.client(token) as client:
        yield client


@pytest.fixture
def browser(served: Served, token: str) -> Iterator[httpx.Client]:
    """A logged-in dashboard session: the login form's CSRF token posted with the API token."""
    with httpx.Client(base_url=served.url, timeout=30) as client:
        csrf = _csrf(client.get("/ui").text)
        assert client.post("/ui/login", data={"token": token, "csrf": csrf}).status_code == 303
        yield client


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _post(browser: httpx.Client, infra_id: str, action: str, data: dict[str, Any]) -> str:
    """Post a form of the page as the browser does (the page's CSRF token with it): the redirect back to the
    page is followed, and the page's message returned."""
    csrf = _csrf(browser.get(f"/ui/infrastructures/{infra_id}").text)
    answer = browser.post(f"/ui/infrastructures/{infra_id}/{action}", data={"csrf": csrf, **data})
    assert answer.status_code == 303, answer.text
    page = browser.get(answer.headers["location"]).text
    found = re.search(r'<p class="message" id="message">(.*?)</p>', page, re.S)
    assert found, page
    return html.unescape(found.group(1))


def _group(api: httpx.Client, infra_id: str, name: str = "web") -> dict[str, Any]:
    return next(g for g in api.get(f"/v1/infrastructures/{infra_id}/groups").json() if g["name"] == name)


def _node(api: httpx.Client, infra_id: str, name: str) -> dict[str, Any]:
    return next(n for n in api.get(f"/v1/infrastructures/{infra_id}/nodes").json() if n["name"] == name)


def _row(page: str, node: str) -> str:
    found = re.search(rf'<tr data-node="{re.escape(node)}"[^>]*>.*?</tr>', page, re.S)
    assert found, page
    return found.group(0)


def _processes_row(page: str, group: str = "web") -> str:
    found = re.search(rf'<tr class="processes" data-group="{group}">.*?</tr>', page, re.S)
    assert found, page
    return found.group(0)


def _live_nodes(api: httpx.Client, infra_id: str) -> list[dict[str, Any]]:
    return sorted((n for n in api.get(f"/v1/infrastructures/{infra_id}/nodes").json() if n["state"] != "terminated"),
                  key=lambda n: n["name"])


def test_suspend_and_resume_processes_through_the_page(api: httpx.Client, browser: httpx.Client, fleet: str) -> None:
    page = browser.get(f"/ui/infrastructures/{fleet}").text
    row = _processes_row(page)
    assert "every process runs" in row
    for process in ("launch", "terminate", "health-check", "replace-unhealthy", "scheduled-actions", "policies",
                    "rebalance", "rollout", "add-to-load-balancer"):
        assert f'name="process" value="{process}"' in row, row

    said = _post(browser, fleet, "suspend", {"group": "web", "process": "launch", "reason": "a quiet hour"})
    assert said == "web: suspended launch; suspended now: launch", said
    assert _group(api, fleet)["suspended"] == {"launch": "a quiet hour"}
    row = _processes_row(browser.get(f"/ui/infrastructures/{fleet}").text)
    assert re.search(r'<li data-process="launch"><span class="mark mark-suspended">launch</span> '
                     r'<span class="dim why">a quiet hour</span></li>', row), row
    assert "every process runs" not in row

    # several ticked at once (a form's repeated field), without a reason: the default one is kept
    said = _post(browser, fleet, "suspend", {"group": "web", "process": ["rebalance", "policies"]})
    assert "suspended now: launch, rebalance, policies" in said or "suspended now: launch, policies, rebalance" in \
        said, said
    suspended = _group(api, fleet)["suspended"]
    assert suspended["launch"] == "a quiet hour" and set(suspended) == {"launch", "rebalance", "policies"}
    assert suspended["rebalance"] == "suspended by the user"

    # one resumed by name, then the rest by ticking none
    said = _post(browser, fleet, "resume", {"group": "web", "process": "rebalance"})
    assert set(_group(api, fleet)["suspended"]) == {"launch", "policies"}, said
    said = _post(browser, fleet, "resume", {"group": "web"})
    assert said == "web: resumed every process; suspended now: none", said
    assert _group(api, fleet)["suspended"] == {}
    assert "every process runs" in _processes_row(browser.get(f"/ui/infrastructures/{fleet}").text)

    # refused as a refused scale is: the page says why, nothing changes
    said = _post(browser, fleet, "suspend", {"group": "web", "process": "napping"})
    assert said.startswith("not suspended: "), said
    said = _post(browser, fleet, "suspend", {"group": "nope", "process": "launch"})
    assert said.startswith("not suspended: ") and "no group 'nope'" in said, said
    assert _group(api, fleet)["suspended"] == {}


def test_protect_a_node_through_the_page(api: httpx.Client, browser: httpx.Client, fleet: str) -> None:
    node = _live_nodes(api, fleet)[0]["name"]
    row = _row(browser.get(f"/ui/infrastructures/{fleet}").text, node)
    assert 'data-protected="no"' in row and "mark-protected" not in row
    assert '<button type="submit" class="protect">protect</button>' in row, row

    said = _post(browser, fleet, "protect", {"node": node, "protected": "yes"})
    assert said == f"{node}: protected from scale-in", said
    assert _node(api, fleet, node)["protected"] is True
    page = browser.get(f"/ui/infrastructures/{fleet}").text
    row = _row(page, node)
    assert 'data-protected="yes"' in row and '<span class="mark mark-protected"' in row, row
    assert '<button type="submit" class="unprotect">unprotect</button>' in row, row
    others = [n["name"] for n in _live_nodes(api, fleet) if n["name"] != node]
    assert all("mark-protected" not in _row(page, other) for other in others)
    node_page = browser.get(f"/ui/infrastructures/{fleet}/nodes/{node}").text
    assert '<span class="mark mark-protected"' in node_page

    said = _post(browser, fleet, "protect", {"node": node, "protected": "no"})
    assert said == f"{node}: no longer protected from scale-in", said
    assert _node(api, fleet, node)["protected"] is False
    assert "mark-protected" not in _row(browser.get(f"/ui/infrastructures/{fleet}").text, node)

    said = _post(browser, fleet, "protect", {"node": "no-such-node", "protected": "yes"})
    assert said.startswith("not protected: ") and "no-such-node" in said, said


def test_standby_and_back_through_the_page(api: httpx.Client, browser: httpx.Client, fleet: str) -> None:
    wait_until(lambda: [n["state"] for n in _live_nodes(api, fleet)] == ["ready", "ready"], 120, "two ready nodes")
    node = _live_nodes(api, fleet)[-1]["name"]
    said = _post(browser, fleet, "standby", {"node": node, "enter": "no"})
    assert said.startswith("not brought back: ") and "not in standby" in said, said

    said = _post(browser, fleet, "standby", {"node": node, "enter": "yes"})
    assert said == f"{node}: in standby", said
    assert _node(api, fleet, node)["standby"] is True
    wait_until(lambda: _group(api, fleet)["count"] == 1, 60, "the group's size one less")
    row = _row(browser.get(f"/ui/infrastructures/{fleet}").text, node)
    assert 'data-standby="yes"' in row and '<span class="mark mark-standby"' in row, row
    assert '<button type="submit" class="standby-exit">back in service</button>' in row, row
    # kept: the manager's pass ends no node for the smaller size (the one in standby is not counted)
    assert [n["name"] for n in _live_nodes(api, fleet)][-1] == node

    said = _post(browser, fleet, "standby", {"node": node, "enter": "no"})
    assert said == f"{node}: back in service", said
    assert _node(api, fleet, node)["standby"] is False
    wait_until(lambda: _group(api, fleet)["count"] == 2, 60, "the group's size back")
    row = _row(browser.get(f"/ui/infrastructures/{fleet}").text, node)
    assert 'data-standby="no"' in row and "mark-standby" not in row
    assert '<button type="submit" class="standby-enter">standby</button>' in row, row
    wait_until(lambda: [n["state"] for n in _live_nodes(api, fleet)] == ["ready", "ready"], 120, "two ready nodes")


def test_a_forged_post_changes_nothing(served: Served, api: httpx.Client, browser: httpx.Client, fleet: str) -> None:
    node = _live_nodes(api, fleet)[0]["name"]
    forged = [("suspend", {"group": "web", "process": "launch"}), ("resume", {"group": "web"}),
              ("protect", {"node": node, "protected": "yes"}), ("standby", {"node": node, "enter": "yes"})]
    for action, data in forged:
        for csrf in ({}, {"csrf": "0" * 64}):  # none, and a wrong one
            answer = browser.post(f"/ui/infrastructures/{fleet}/{action}", data={**data, **csrf})
            assert answer.status_code == 403, (action, answer.text)
            assert "CSRF token is missing or wrong" in answer.text
        # the right token from another login's page is no use without the login cookie
        with httpx.Client(base_url=served.url, timeout=30) as stranger:
            csrf_token = _csrf(browser.get(f"/ui/infrastructures/{fleet}").text)
            answer = stranger.post(f"/ui/infrastructures/{fleet}/{action}", data={**data, "csrf": csrf_token})
            assert answer.status_code == 401, (action, answer.text)
    assert _group(api, fleet)["suspended"] == {}
    assert [(n["protected"], n["standby"]) for n in _live_nodes(api, fleet)] == [(False, False), (False, False)]


def test_a_state_the_page_has_no_colour_for_renders_plain(api: httpx.Client, fleet: str) -> None:
    """The lifecycle hooks' waiting and draining (and any state to come): a class of its own, no style map."""
    from cloudherd.api.types import Infrastructure
    from cloudherd.server import ui

    shown = api.get(f"/v1/infrastructures/{fleet}").json()
    for node in shown["nodes"]:
        node.pop("last_action", None)  # its computed seconds are not an input
    view = Infrastructure.model_validate(shown)
    odd = ["waiting", "draining", "Some <odd> state"]
    nodes = tuple(n.model_copy(update={"state": state}) for n, state in zip(view.nodes, odd, strict=False))
    nodes += (view.nodes[0].model_copy(update={"state": odd[2], "name": "odd-one"}),)
    page = ui._templates.get_template("infrastructure.html").render(
        infra=view.model_copy(update={"nodes": nodes}), events=[], revisions=[], plots=[], metric_plots=[],
        processes=ui.PROCESSES, in_service=ui.IN_SERVICE, retired=[], csrf="x", fragment=True, message=None)
    assert '<td class="state state-waiting">waiting</td>' in page
    assert '<td class="state state-draining">draining</td>' in page
    assert '<td class="state state-some--odd--state">Some &lt;odd&gt; state</td>' in page
    assert ui.state_class("") == "state-unknown"
    css = (Path(ui.__file__).parent / "static" / "ui.css").read_text()
    assert ".state-waiting, .state-draining" in css


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, driven through its chromedriver (as the dashboard's own browser test)."""
    import os
    import shutil

    binary, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        binary = None
    if binary is None or driver_path is None:
        reason = "needs selenium, chromium and chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the dashboard tests: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--no-proxy-server", "--disable-background-networking"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _js(driver: Any, script: str, *args: Any) -> Any:
    """One script against the page as it is now (a live re-render may replace any element found earlier)."""
    return driver.execute_script(script, *args)


def test_the_page_keeps_ticked_processes_across_a_re_render_and_suspends_them(
        served: Served, token: str, api: httpx.Client, fleet: str, chromium: Any) -> None:
    from selenium.webdriver.common.by import By

    chromium.get(f"{served.url}/ui")
    chromium.find_element(By.ID, "token").send_keys(token)
    chromium.find_element(By.ID, "login").click()
    wait_until(lambda: chromium.find_elements(By.CSS_SELECTOR, "#infrastructures"), 10, "the list")
    chromium.get(f"{served.url}/ui/infrastructures/{fleet}")
    box = "#processes-web input[name='process'][value='rollout']"
    wait_until(lambda: _js(chromium, "return !!document.querySelector(arguments[0])", box), 10, "the processes form")
    before = int(_js(chromium, "return Number(document.getElementById('main').dataset.refreshed || '0')"))
    _js(chromium, "var b = document.querySelector(arguments[0]); b.checked = true; "
                  "document.querySelector('#processes-web input[name=reason]').value = 'a release freeze';", box)

    # something else changes the fleet (a protection, through the API): the page re-renders, the ticks stay
    node = _live_nodes(api, fleet)[0]["name"]
    assert api.post(f"/v1/infrastructures/{fleet}/nodes/protection",
                    json={"nodes": [node], "protected": True}).status_code == 200
    wait_until(lambda: 'data-protected="yes"' in _js(
        chromium, "var r = document.querySelector(arguments[0]); return r ? r.outerHTML : '';",
        f"#nodes tr[data-node='{node}']"), 30, "the protection on the open page")
    assert int(_js(chromium, "return Number(document.getElementById('main').dataset.refreshed)")) > before
    assert _js(chromium, "return document.querySelector(arguments[0]).checked", box) is True
    assert _js(chromium, "return document.querySelector('#processes-web input[name=reason]').value") == \
        "a release freeze"

    _js(chromium, "document.querySelector('#processes-web button.suspend').click()")
    wait_until(lambda: _group(api, fleet)["suspended"] == {"rollout": "a release freeze"}, 10, "rollout suspended")
    shown = "#groups tr.processes[data-group='web'] li[data-process='rollout']"
    wait_until(lambda: "a release freeze" in _js(
        chromium, "var e = document.querySelector(arguments[0]); return e ? e.textContent : '';", shown), 10,
        "the suspended process on the page")
    _js(chromium, "document.querySelector('#processes-web button.resume').click()")  # none ticked: all
    wait_until(lambda: _group(api, fleet)["suspended"] == {}, 10, "every process resumed")
    assert api.post(f"/v1/infrastructures/{fleet}/nodes/protection",
                    json={"nodes": [node], "protected": False}).status_code == 200
