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
