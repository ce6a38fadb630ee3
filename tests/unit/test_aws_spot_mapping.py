"""The AWS driver's spot mapping, pure: EC2's answers (as boto3 parses them) to what the engine reads, and a spot
create to what RunInstances is sent.  The same over moto's HTTP: tests/integration/aws/test_aws_spot.py."""

from __future__ import annotations

import pytest

from cloudherd.providers.aws.driver import _client_token, _instance, _market_token, end_reason, spot_options
from cloudherd.providers.aws.errors import client_error
from cloudherd.providers.base import SPOT_INTERRUPTED, CapacityError, CreateRequest, QuotaError

SPOT_CODE = "Server.SpotInstanceTermination"


def described(**fields: object) -> dict[str, object]:
    return {"InstanceId": "i-0abc", "State": {"Name": "terminated"}, **fields}


def test_a_spot_interruption_is_told_by_its_state_reason() -> None:
    taken = described(StateReason={"Code": SPOT_CODE, "Message": f"{SPOT_CODE}: Spot instance termination"})
    assert end_reason(taken) == f"{SPOT_INTERRUPTED} ({SPOT_CODE}: Spot instance termination)"
    terse = described(StateReason={"Code": SPOT_CODE, "Message": "taken back"})  # a message without the code
    assert end_reason(terse) == f"{SPOT_INTERRUPTED} ({SPOT_CODE}: taken back)"
    assert end_reason(described(StateReason={"Code": SPOT_CODE})) == f"{SPOT_INTERRUPTED} ({SPOT_CODE})"


@pytest.mark.parametrize("reason", [
    {"Code": "Client.UserInitiatedShutdown", "Message": "Client.UserInitiatedShutdown: User initiated shutdown"},
    {"Code": "Server.InternalError", "Message": "Server.InternalError: Internal error on launch"},
    {},
])
def test_any_other_end_is_left_to_the_engine(reason: dict[str, str]) -> None:
    assert end_reason(described(StateReason=reason)) is None


def test_an_instance_with_no_state_reason_says_nothing() -> None:
    assert end_reason(described()) is None


def test_spot_options_cap_the_price_only_when_asked() -> None:
    capped = spot_options(0.05)
    assert capped == {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time",
                                                            "InstanceInterruptionBehavior": "terminate",
                                                            "MaxPrice": "0.05"}}
    assert "MaxPrice" not in spot_options(None)["SpotOptions"]


@pytest.mark.parametrize(("lifecycle", "market"), [("spot", "spot"), (None, "on-demand"), ("scheduled", "on-demand")])
def test_a_listed_instance_says_its_market(lifecycle: str | None, market: str) -> None:
    item = {"InstanceId": "i-0abc", "State": {"Name": "running"}, **({"InstanceLifecycle": lifecycle} if lifecycle
                                                                      else {})}
    assert _instance(item).extra["market"] == market


def test_the_spot_create_and_its_on_demand_fallback_send_other_client_tokens() -> None:
    def request(market: str) -> CreateRequest:
        return CreateRequest(count=1, image=None, size=None, tags={}, ssh_user="u", ssh_public_key="",
                             token="infra-web-0123456789abcdef", market=market)

    spot, on_demand = (_client_token(_market_token(request(m))) for m in ("spot", "on-demand"))
    assert spot != on_demand
    assert on_demand == "infra-web-0123456789abcdef"  # an on-demand create's token is the request's, as before
    assert spot == _client_token(_market_token(request("spot")))  # and a retried spot attempt sends the same


@pytest.mark.parametrize("code", ["InsufficientInstanceCapacity", "InsufficientCapacity", "UnfulfillableCapacity",
                                  "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded"])
def test_spot_refusals_are_capacity_errors(code: str) -> None:
    error = client_error("aws run_instances in us-east-1", "run_instances", code, 400, "no spot for you")
    assert isinstance(error, CapacityError) and not isinstance(error, QuotaError)
    assert error.code == code
