"""The infrastructure page's lifecycle hooks and warm pool, over a real `cloudherd serve`: a group whose launch hook
holds its new node lists the hold (node, hook, transition, deadline) with Continue and Abandon buttons; pressing
Continue (the page's own form: login cookie, CSRF token) puts the node in service, as the native API then says.
A forged post (no CSRF token, a wrong one) completes nothing.  The group's warm pool is listed apart from its nodes
in service, each pool node marked warm."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import cli, wait_until
from server_harness import Served, serving

SPEC = """\
name: hooked-page
groups:
  web:
    count: 1
    min: 0
    max: 3
    hooks:
      - {name: warmup, on: launch, timeout: 1h}
    warm_pool: {size: 1}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("hooks-page")
    with serving(folder / "home", folder, interval=30) as running:
        yield running


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


def _nodes(api: httpx.Client, infra_id: str) -> dict[str, dict[str, Any]]:
    answer = api.get(f"/v1/infrastructures/{infra_id}/nodes")
    assert answer.status_code == 200, answer.text
    return {n["name"]: n for n in answer.json() if n["state"] != "terminated"}


def _holds(api: httpx.Client, infra_id: str) -> list[dict[str, Any]]:
    answer = api.get(f"/v1/infrastructures/{infra_id}/hooks")
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def _table(page: str, table: str) -> str:
    found = re.search(rf'<table id="{table}">.*?</table>', page, re.S)
    assert found, page
    return found.group(0)


def _row(part: str, node: str) -> str:
    found = re.search(rf'<tr data-node="{re.escape(node)}"[^>]*>.*?</tr>', part, re.S)
    assert found, part
    return found.group(0)


def _message(browser: httpx.Client, answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text
    page = browser.get(answer.headers["location"]).text
    found = re.search(r'<p class="message" id="message">(.*?)</p>', page, re.S)
    assert found, page
    return html.unescape(found.group(1))


def test_a_held_node_is_listed_and_continued_from_the_page(api: httpx.Client, browser: httpx.Client, served: Served,
                                                           token: str, tmp_path: Path) -> None:
    made = api.post("/v1/infrastructures", content=SPEC, headers={"Content-Type": "application/yaml"})
    assert made.status_code == 201, made.text
    infra = str(made.json()["id"])

    def held() -> dict[str, dict[str, Any]] | None:
        nodes = _nodes(api, infra)
        serving = [n for n in nodes.values() if not n["warm"]]
        pool = [n for n in nodes.values() if n["warm"] and n["state"] == "stopped"]
        return nodes if [n["state"] for n in serving] == ["waiting"] and len(pool) == 1 else None

    nodes = wait_until(held, timeout=180, what="the launch hook's waiting node and the warm pool's stopped one")
    [waiting] = [name for name, n in nodes.items() if not n["warm"]]
    [pooled] = [name for name, n in nodes.items() if n["warm"]]
    [hold] = _holds(api, infra)
    assert (hold["node"], hold["hook"], hold["transition"]) == (waiting, "warmup", "launch")

    page = browser.get(f"/ui/infrastructures/{infra}").text
    row = _row(_table(page, "hooks"), waiting)
    assert 'data-hook="warmup"' in row and 'data-transition="launch"' in row, row
    assert '<td class="hook">warmup</td>' in row and '<td class="transition">launch</td>' in row, row
    deadline = hold["deadline"].replace("T", " ")[:19]
    assert f"{deadline} UTC" in row, (deadline, row)
    assert re.search(r'<button type="submit" class="hook-continue">Continue</button>', row), row
    assert re.search(r'<button type="submit" class="hook-abandon danger">Abandon</button>', row), row
    # the warm pool apart from the nodes in service, its node marked warm
    pool = _row(_table(page, "warm-pool"), pooled)
    assert 'data-warm="yes"' in pool and 'data-state="stopped"' in pool and "mark-warm" in pool, pool
    assert f'data-node="{pooled}"' not in _table(page, "nodes")
    assert f'data-node="{waiting}"' in _table(page, "nodes")

    # `cloudherd status` through the server says the same of the held node and the pool
    shown = cli("status", infra, env={"CLOUDHERD_HOME": str(tmp_path / "client"), "CLOUDHERD_SERVER": served.url,
                                      "CLOUDHERD_TOKEN": token, "COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    assert f"waiting (launch hook warmup until {deadline[11:]} UTC)" in shown.stdout, shown.stdout
    assert "web: warm pool: 1 stopped" in shown.stdout and re.search(r"stopped warm\b", shown.stdout), shown.stdout

    # forged posts complete nothing: no CSRF token, a wrong one
    form = {"node": waiting, "hook": "warmup", "result": "CONTINUE"}
    for forged in (form, {**form, "csrf": "0" * 64}):
        refused = browser.post(f"/ui/infrastructures/{infra}/hook", data=forged)
        assert refused.status_code == 403 and "CSRF" in refused.text, refused.text
    assert [h["result"] for h in _holds(api, infra)] == [None]
    assert _nodes(api, infra)[waiting]["state"] == "waiting"

    # a result that is neither is refused as a refused scale is: the page says why
    csrf = _csrf(page)
    said = _message(browser, browser.post(f"/ui/infrastructures/{infra}/hook",
                                          data={**form, "csrf": csrf, "result": "maybe"}))
    assert said.startswith("not completed: "), said
    assert len(_holds(api, infra)) == 1

    # the page's Continue: the hold is completed and the node goes into service
    said = _message(browser, browser.post(f"/ui/infrastructures/{infra}/hook", data={**form, "csrf": csrf}))
    assert said == f"{waiting}: launch hook warmup: CONTINUE", said
    wait_until(lambda: _nodes(api, infra)[waiting]["state"] == "ready", timeout=120,
               what=f"{waiting} in service after Continue")
    assert _holds(api, infra) == []
    page = browser.get(f"/ui/infrastructures/{infra}").text
    assert 'id="no-hooks"' in page and '<table id="hooks">' not in page
    assert 'data-state="ready"' in _row(_table(page, "nodes"), waiting)

    # no hold left to complete: said, not an error page
    said = _message(browser, browser.post(f"/ui/infrastructures/{infra}/hook", data={**form, "csrf": csrf}))
    assert said.startswith("not completed: ") and "is not held" in said, said
