"""The manager never dies of one fleet's trouble: a pass that fails for any reason is that infrastructure's
failure (an event, the next pass tries again), the other fleets are kept, and /healthz tells the truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import wait_until
from server_harness import Served, serving

SPEC = """\
name: {name}
groups:
  web:
    count: 1
    scripts:
      - name: run.sh
        content: "{script}"
"""


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, interval=0.5) as running:
        yield running


def _health(served: Served) -> httpx.Response:
    return httpx.get(f"{served.url}/healthz", timeout=10)


def _failed_passes(api: httpx.Client, infra_id: str) -> list[str]:
    events = api.get(f"/v1/infrastructures/{infra_id}/events", headers={"Accept": "application/json"}).json()
    return [e["message"] for e in events if e["message"].startswith("reconcile:")]


def test_a_failing_script_costs_its_fleet_not_the_manager(served: Served) -> None:
    api = served.client(served.token())
    bad = api.post("/v1/infrastructures", content=SPEC.format(name="bad", script="echo broken; exit 1"))
    assert bad.status_code == 201, bad.text
    bad_id = bad.json()["id"]
    # the bad fleet's passes fail, each one an event, again and again: the manager lives through them
    wait_until(lambda: len(_failed_passes(api, bad_id)) >= 2, 120, "two failed passes of the bad fleet")
    good = api.post("/v1/infrastructures", content=SPEC.format(name="good", script="echo fine"))
    assert good.status_code == 201, good.text
    good_id = good.json()["id"]
    wait_until(lambda: [n["state"] for n in api.get(f"/v1/infrastructures/{good_id}/nodes").json()] == ["ready"],
               120, "the good fleet made and ready beside the bad one")
    health = _health(served)
    assert health.status_code == 200, health.text
    rounds = health.json()["manager"]["rounds"]
    wait_until(lambda: _health(served).json()["manager"]["rounds"] > rounds, 60, "the manager's next round")
    errors = _failed_passes(api, bad_id)
    assert errors and all("internal error" not in m and "ExceptionGroup" not in m for m in errors), errors
    assert "the manager failed" not in served.log_text() and "Traceback" not in served.log_text()


def test_a_stored_spec_that_no_longer_loads_is_that_fleets_failure(tmp_path: Path, memory_store: object) -> None:
    """A spec changed behind the manager's back (an Auto Scaling update that slipped past a check, an edit of
    the database) fails its fleet's pass with the spec's own error; reconcile itself returns."""
    import asyncio

    from helpers import recorded_infrastructure, spec_of

    from cloudherd.engine.reconcile import reconcile
    from cloudherd.state.repo import Store

    assert isinstance(memory_store, Store)
    loaded = spec_of(tmp_path, "name: drift\ngroups:\n  web: {count: 1}\n")
    infra = recorded_infrastructure(memory_store, loaded)
    memory_store.update_infrastructure(infra.id, spec_text="name: drift\ngroups:\n  web: {count: -5}\n")
    report = asyncio.run(reconcile(memory_store, infra.id))
    assert report.error is not None and "groups.web.count" in report.error, report.error
    assert [e.message for e in memory_store.events(infra.id) if e.kind == "error"] == [f"reconcile: {report.error}"]
