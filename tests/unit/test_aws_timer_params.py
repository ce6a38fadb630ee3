"""What a create asks EC2 for, for the machines to end themselves (the parts moto cannot judge: EC2 refuses metadata
tags when a tag key holds other characters, so such a create gets no timer, and says so)."""

from __future__ import annotations

from cloudherd.providers.aws.node_timer import timer_params
from cloudherd.providers.base import CreateRequest


def request(**fields: object) -> CreateRequest:
    return CreateRequest(count=1, image=None, size=None, tags={}, ssh_user="u", ssh_public_key="", **fields)  # type: ignore[arg-type]


def test_no_deadline_asks_nothing() -> None:
    assert timer_params(request(), {"cloudherd:infra": "x"}) == ({}, None)


def test_a_deadline_asks_for_the_shutdown_behaviour_and_the_metadata_tags() -> None:
    params, notice = timer_params(request(deadline=1_800_000_000, on_deadline="stop"), {"cloudherd:infra": "x"})
    assert notice is None
    assert params["InstanceInitiatedShutdownBehavior"] == "stop"
    assert params["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
    assert "HttpTokens" not in params["MetadataOptions"]  # IMDSv1 left as the account has it


def test_a_tag_key_ec2_refuses_in_the_metadata_means_no_timer_and_a_notice() -> None:
    params, notice = timer_params(request(deadline=1_800_000_000), {"cloudherd:infra": "x", "cost center": "7"})
    assert params == {}
    assert notice is not None and "cost center" in notice and "the manager alone ends them" in notice
