"""What a fleet costs, on moto's EC2 over real HTTP: `plan` prices each change from the price book, and
`cost` counts the machines of an `up` that failed (they were billed) but never a launch that made no machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from helpers import cli
from moto_catalog import an_image
from moto_faults import FaultyMotoServer

from cloudherd.providers.prices import HOURS_A_MONTH, price_book

AMI = an_image()

SPEC = """\
name: spend
providers:
  cloud: {{type: aws, region: us-east-1, reach: "tests.support.moto_reach:LocalStandIns"}}
groups:
  web:
    provider: cloud
    image: {image}
    size: t3.small
    count: 2
    scripts:
      - {{name: fail.sh, content: "exit 3"}}
"""


def env() -> dict[str, str]:
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[3]) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_plan_prices_the_change_and_cost_counts_a_failed_up(home: Path, tmp_path: Path,
                                                             moto_server: FaultyMotoServer) -> None:
    price = price_book("aws").price("us-east-1", "t3.small")  # type: ignore[union-attr]
    assert price is not None and price.hourly > 0
    spec = tmp_path / "spend.yml"
    spec.write_text(SPEC.format(image=AMI))
    shown = cli("plan", str(spec), env=env())
    delta = 2 * price.hourly
    assert f"Δ +${delta:.4f}/h (+${delta * HOURS_A_MONTH:,.2f}/month) at ${price.hourly:.4f}/h a node, " \
           "aws prices of " in shown.stdout, shown.stdout
    planned = json.loads(cli("plan", str(spec), "--json", env=env()).stdout)
    assert planned["hourly_delta"] == pytest.approx(delta)

    failed = cli("up", str(spec), "--keep-on-failure", env=env())
    assert failed.returncode != 0  # the script failed on both nodes: their machines were made, and billed
    report = json.loads(cli("cost", "spend", "--json", env=env()).stdout)
    [line] = report["lines"]
    assert (line["group"], line["machines"], line["running"]) == ("web", 2, 2)
    assert line["node_hours"] > 0 and line["cost"] == pytest.approx(line["node_hours"] * price.hourly)
    assert line["hourly_now"] == pytest.approx(delta) and line["prices"].startswith("aws prices of ")
    assert cli("down", "spend", env=env()).returncode == 0
    ended = json.loads(cli("cost", "spend", "--json", env=env()).stdout)["lines"][0]
    assert (ended["running"], ended["destroyed"], ended["hourly_now"]) == (0, True, 0)

    moto_server.faults.fail("RunInstances", "InsufficientInstanceCapacity")  # no machine made: nothing billed
    nothing = tmp_path / "nothing.yml"
    nothing.write_text(SPEC.format(image=AMI).replace("name: spend", "name: nothing"))
    assert cli("up", str(nothing), env=env()).returncode != 0
    assert json.loads(cli("cost", "nothing", "--json", env=env()).stdout)["lines"] == []


BUDGETED = """\
name: capped
providers:
  cloud: {{type: aws, region: us-east-1, reach: "tests.support.moto_reach:LocalStandIns"}}
budget: {{hourly: {hourly}}}
groups:
  web:
    provider: cloud
    image: {image}
    size: t3.small
    count: {count}
    max: 6
"""


def test_an_hourly_budget_refuses_a_plan_and_holds_a_scale_out(home: Path, tmp_path: Path, moto: str) -> None:
    price = price_book("aws").price("us-east-1", "t3.small")  # type: ignore[union-attr]
    assert price is not None
    hourly = round(2.5 * price.hourly, 6)  # room for 2 nodes, not 3
    spec = tmp_path / "capped.yml"
    spec.write_text(BUDGETED.format(hourly=hourly, image=AMI, count=3))
    refused = cli("plan", str(spec), env=env())
    expected = f"over the hourly budget: ${3 * price.hourly:,.4f}/h for web 3 > ${hourly:,.4f}/h (budget.hourly)"
    assert refused.returncode == 2 and expected in refused.stderr, refused.stderr
    made = cli("up", str(spec), env=env())
    assert made.returncode == 2 and expected in made.stderr, made.stderr
    assert cli("ls", env=env()).stdout.count("capped") == 0  # nothing made, nothing recorded

    spec.write_text(BUDGETED.format(hourly=hourly, image=AMI, count=2))
    assert cli("up", str(spec), env=env()).returncode == 0
    scaled = cli("scale", "capped", "web", "+2", env=env())
    assert scaled.returncode == 0, scaled.stderr
    status = json.loads(cli("status", "capped", "--json", env=env()).stdout)
    assert [g["count"] for g in status["groups"]] == [2]
    events = [json.loads(line) for line in cli("events", "capped", "--json", env=env()).stdout.splitlines()]
    said = [e["message"] for e in events if e["kind"] == "budget"]
    assert said == [f"web: 4 node(s) asked, 2 kept: the hourly budget is ${hourly:,.4f}/h"]
    assert cli("down", "capped", env=env()).returncode == 0


def instance_states(url: str, infra_id: str) -> list[str]:
    """The states of the infrastructure's instances (moto's backend is shared by the tests of a process)."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    return sorted(i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                  if {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("cloudherd:infra") == infra_id)


@pytest.mark.parametrize("on_total", ["stop", "down"])
def test_a_total_budget_reached_stops_or_ends_the_fleet(home: Path, tmp_path: Path, moto: str, on_total: str) -> None:
    spec = tmp_path / "capped.yml"
    text = BUDGETED.format(hourly=1000, image=AMI, count=2)
    spec.write_text(text.replace("budget: {hourly: 1000}", f"budget: {{total: 0.000001, on_total: {on_total}}}"))
    made = cli("up", str(spec), env=env())
    assert made.returncode == 0, made.stderr
    infra_id = made.stdout.strip()
    assert cli("manage", "capped", "--once", env=env()).returncode == 0  # a pass sees the total spent
    events = [json.loads(line) for line in cli("events", "capped", "--json", env=env()).stdout.splitlines()]
    [said] = [e["message"] for e in events if e["kind"] == "budget"]
    assert said.startswith("budget: $") and "total $0.0000 reached" in said
    status = json.loads(cli("status", "capped", "--json", env=env()).stdout)
    [web] = status["groups"]
    assert web["suspended"]["launch"].startswith("budget: ")  # nothing of the manager's starts a machine again
    if on_total == "stop":
        assert said.endswith("2 machine(s) stopped (on_total: stop)")
        assert instance_states(moto, infra_id) == ["stopped", "stopped"] and web["count"] == 2
    else:
        assert said.endswith("every group to size 0 (on_total: down)")
        assert instance_states(moto, infra_id) == ["terminated", "terminated"] and web["count"] == 0
    assert json.loads(cli("cost", "capped", "--json", env=env()).stdout)["hourly_now"] == 0
    assert cli("down", "capped", env=env()).returncode == 0
