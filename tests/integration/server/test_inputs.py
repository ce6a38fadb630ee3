"""Numbers from people and clients are ASCII digits, bounded: `²` and a 5000-digit string are a 400 with the
reason (or are no member index at all), never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cli
from server_harness import Served, serving

from cloudherd.api.autoscaling import AwsError
from cloudherd.inputs import whole
from cloudherd.server.autoscaling import _members, _structs

HOSTILE = ["²", "٣", "1²", "9" * 5000, "", "-1", "+1", " 1", "1e3"]


def test_whole_takes_ascii_digits_only() -> None:
    assert [whole(t) for t in ("0", "7", "123456789012345678")] == [0, 7, 123456789012345678]
    assert [whole(t) for t in HOSTILE] == [None] * len(HOSTILE)
    assert whole("1234567890", 9) is None


def test_query_api_member_indexes_are_ascii_digits() -> None:
    """A member index that is not 1-6 ASCII digits is refused, saying so (it used to be skipped in silence:
    a filter or a tag that did nothing)."""
    assert _members({"Ids.member.1": "a", "Ids.member.2": "d"}, "Ids") == ["a", "d"]
    assert _structs({"Tags.member.1.Key": "k", "Tags.member.1.Value": "v"}, "Tags") == [{"Key": "k", "Value": "v"}]
    for bad in ("²", "9" * 5000, "0", "-1", "x"):
        with pytest.raises(AwsError, match="a member index is a number from 1"):
            _members({"Ids.member.1": "a", f"Ids.member.{bad}": "b"}, "Ids")
        with pytest.raises(AwsError, match="a member index is a number from 1"):
            _structs({f"Tags.member.{bad}.Key": "x"}, "Tags")


@pytest.mark.usefixtures("home")
@pytest.mark.parametrize("change", ["=²", "+" + "9" * 5000])
def test_a_scale_of_no_number_is_one_line(change: str) -> None:
    done = cli("scale", "nosuch", "web", change)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "a scale is +N, -N or =N" in done.stderr


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path) as running:
        yield running


def test_event_ids_and_offsets_that_are_no_numbers_are_a_400(served: Served) -> None:
    api = served.client(served.token())
    made = api.post("/v1/infrastructures?attach=false", content="name: n\ngroups:\n  web: {count: 0}\n")
    assert made.status_code == 201, made.text
    events = f"/v1/infrastructures/{made.json()['id']}/events?follow=false"
    for bad in ("²", "9" * 5000):
        answer = api.get(events, headers={"Last-Event-ID": bad.encode()})
        assert answer.status_code == 400 and "Last-Event-ID" in answer.text, (bad[:10], answer.text)
    answer = api.get(events + "&after=99999999999999999999")
    assert answer.status_code == 422, answer.text
    assert api.get(events, headers={"Last-Event-ID": "0"}).status_code == 200
