"""The infrastructure page says what the fleet costs and when it ends, over a real `cloudherd serve`: its cost now
and so far with the price book named, its time to live, and when autostop and autodown act if it stays idle."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until
from server_harness import Served, dashboard_session, ready_nodes, serving

SPEC = """\
name: spend-page
ttl: 8h
autostop: {idle: 30m}
autodown: {idle: 7d}
groups:
  web:
    count: 1
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("spend-page")
    with serving(folder / "home", folder, interval=30) as running:
        yield running


def test_the_page_shows_the_cost_and_the_deadlines(served: Served, token: str, tmp_path: Path) -> None:
    with served.client(token) as api:
        made = api.post("/v1/infrastructures", content=SPEC, headers={"Content-Type": "application/yaml"})
        assert made.status_code == 201, made.text
        infra_id = made.json()["id"]
        wait_until(lambda: len(ready_nodes(api, infra_id)) == 1, timeout=120, what="the node ready")
        before = api.get(f"/v1/infrastructures/{infra_id}").json()
        with dashboard_session(served, token) as browser:
            page = html.unescape(browser.get(f"/ui/infrastructures/{infra_id}").text)
        after = api.get(f"/v1/infrastructures/{infra_id}").json()
    assert "cost: $0.0000/h now, $0.0000 so far (local: free)" in page
    ends = before["ends_at"][:19].replace("T", " ")
    assert f"ends {ends} UTC (time to live)" in page
    for rule in ("autostop", "autodown"):  # a pass that finds the fleet in use meanwhile moves them on
        found = re.search(rf"{rule} (\S+ \S+) UTC if idle until then", page)
        assert found, page
        shown = found.group(1).replace(" ", "T")
        assert before["idle_deadlines"][rule][:19] <= shown <= after["idle_deadlines"][rule][:19]
