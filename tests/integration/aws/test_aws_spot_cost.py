"""What a spot group costs, on moto's EC2 over real HTTP: `plan` prices its mix of spot and on-demand nodes from
the price book's spot and on-demand prices, and `cost` reckons each machine at the price of the market it was
bought on (a line per market).  The prices are the test's own, written as a refreshed book would be."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from helpers import cli
from moto_catalog import an_image

from cloudherd.providers.prices import HOURS_A_MONTH, Price, PriceBook, save_book

ON_DEMAND, SPOT = 0.0400, 0.0125

SPEC = """\
name: thrifty
providers:
  cloud: {{type: aws, region: us-east-1, reach: "tests.support.moto_reach:LocalStandIns"}}
groups:
  web:
    provider: cloud
    image: {image}
    size: t3.medium
    count: 4
    market: {{type: spot, on_demand_base: 1}}
"""


def env() -> dict[str, str]:
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[3]) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_plan_and_cost_price_spot_nodes_at_spot(home: Path, tmp_path: Path, moto: str) -> None:
    save_book(PriceBook("aws", date.today(), "this test", {"us-east-1": {"t3.medium": Price(ON_DEMAND, SPOT)}}))
    spec = tmp_path / "thrifty.yml"
    spec.write_text(SPEC.format(image=an_image()))

    planned = json.loads(cli("plan", str(spec), "--json", env=env()).stdout)
    [web] = planned["groups"]
    mix = ON_DEMAND + 3 * SPOT  # the base on demand, the rest spot
    assert planned["hourly_delta"] == pytest.approx(mix)
    assert "3 spot + 1 on-demand" in web["prices"] and f"spot ${SPOT:.4f}/h" in web["prices"], web["prices"]
    shown = cli("plan", str(spec), env=env()).stdout
    assert f"Δ +${mix:.4f}/h (+${mix * HOURS_A_MONTH:,.2f}/month)" in shown, shown

    made = cli("up", str(spec), env=env())
    assert made.returncode == 0, made.stderr
    report = json.loads(cli("cost", "thrifty", "--json", env=env()).stdout)
    lines = {line["market"]: line for line in report["lines"]}
    assert {m: (line["machines"], line["hourly"]) for m, line in lines.items()} == \
           {"on-demand": (1, ON_DEMAND), "spot": (3, SPOT)}
    assert report["hourly_now"] == pytest.approx(mix)
    for line in lines.values():
        assert line["cost"] == pytest.approx(line["node_hours"] * line["hourly"])
    table = cli("cost", "thrifty", env=env()).stdout
    assert "web (spot)" in table and f"${mix:,.4f}/h" in table, table
    assert cli("down", "thrifty", env=env()).returncode == 0
