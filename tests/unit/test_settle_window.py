"""A cloud's listing lags its creates: the journal does not call a young create intent's machines "never made".

EC2's DescribeInstances can miss an instance for seconds after RunInstances.  A create intent a crashed run
left open, whose tag lists nothing yet, stays open while it is younger than the provider's ``listing_lag``
(``settle_window`` of its provider entry; 60 s for clouds, 0 for local), and the next command looks again.
Through the real code paths: spec loading, ``make_provider``, the journal, an in-memory Store, and the local
provider (no machine is made: no sshd needed) or libcloud's in-memory Dummy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import recorded_infrastructure, spec_of

from cloudherd.engine.context import Providers
from cloudherd.engine.events import ProgressEvent
from cloudherd.engine.journal import resolve
from cloudherd.errors import SpecError
from cloudherd.lifecycle import InfraState
from cloudherd.providers import InvalidRequestError, make_provider
from cloudherd.providers.aws import AwsProvider
from cloudherd.providers.base import TAG_INTENT, CreateRequest, Instance, Provider
from cloudherd.providers.local import LocalProvider
from cloudherd.providers.wrapper import ProviderWrapper
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Infrastructure, Intent, Node
from cloudherd.state.repo import Store


def local_spec(tmp_path: Path, window: str | None) -> LoadedSpec:
    setting = f", settle_window: {window}" if window is not None else ""
    return spec_of(tmp_path, f"name: s\nproviders:\n  here: {{type: local{setting}}}\n"
                             "groups:\n  web: {provider: here, count: 2}\n")


def dummy_spec(tmp_path: Path, window: str | None) -> LoadedSpec:
    setting = f", settle_window: {window}" if window is not None else ""
    return spec_of(tmp_path, f'name: s\nproviders:\n  here: {{type: libcloud, driver: "libcloud_wire:BulkDummyDriver", '
                             f"key: 0{setting}}}\ngroups:\n  web: {{provider: here, image: Ubuntu 9.10, count: 2}}\n")


def driver_of(provider: Provider) -> Provider:
    return provider.driver if isinstance(provider, ProviderWrapper) else provider


def interrupted_create(store: Store, infra: Infrastructure, count: int = 2) -> tuple[list[Node], Intent]:
    """A run that committed its create intent and died: nothing carrying the intent's tag is listed."""
    store.add_nodes(infra.id, [{"group_name": "web", "name": f"s-web-{i}", "index": i, "provider": "here"}
                               for i in range(1, count + 1)])
    rows = store.nodes(infra.id)
    intent = store.open_intent(infra.id, "here", "create", group_name="web", count=count,
                               node_ids=[r.id for r in rows])
    return rows, intent


def state_of(store: Store, infra: Infrastructure, intent_id: str) -> tuple[str, str | None]:
    intent = next(i for i in store.intents(infra.id) if i.id == intent_id)
    return intent.state, intent.outcome


def settle(store: Store, infra: Infrastructure, loaded: LoadedSpec,
           providers: Providers | None = None) -> tuple[int, list[ProgressEvent]]:
    """One command's settling of open intents (its own providers, unless given: the Dummy's machines live in
    its driver object)."""
    events: list[ProgressEvent] = []
    mine = providers or Providers(loaded)
    try:
        return asyncio.run(resolve(store, infra, mine, events.append)), events
    finally:
        if providers is None:
            asyncio.run(mine.close())


def age(store: Store, intent_id: str, by: timedelta) -> None:
    """The intent as committed ``by`` ago (its row's creation time moved back)."""
    with store.session() as s, s.begin():
        intent = s.get_one(Intent, intent_id)
        intent.created_at = datetime.now(UTC) - by


# -- the window ---------------------------------------------------------------------------------------------


def test_a_young_create_intent_that_lists_nothing_stays_open(home: Path, tmp_path: Path,
                                                             memory_store: Store) -> None:
    loaded = local_spec(tmp_path, "3600")
    assert driver_of(Providers(loaded).get("here")).listing_lag == 3600.0
    infra = recorded_infrastructure(memory_store, loaded, state="creating")
    _, intent = interrupted_create(memory_store, infra)
    settled, events = settle(memory_store, infra, loaded)
    assert settled == 0
    assert state_of(memory_store, infra, intent.id) == ("open", None)
    assert [i.id for i in memory_store.open_intents(infra.id)] == [intent.id]
    assert {n.state for n in memory_store.nodes(infra.id)} == {"pending"}
    assert [e.message for e in events] == [f"journal: create intent {intent.id} left open: nothing listed yet"]
    assert [e for e in memory_store.events(infra.id) if e.kind == "journal"] == []
    # the next command looks again, and again leaves it while it is young
    assert settle(memory_store, infra, loaded)[0] == 0
    # once older than the window, an empty listing is believed
    age(memory_store, intent.id, timedelta(hours=2))
    assert settle(memory_store, infra, loaded)[0] == 1
    assert state_of(memory_store, infra, intent.id) == ("resolved", "adopted 0, terminated 0 surplus, 2 never made")


@pytest.mark.parametrize("window", ["0", "0s", None])
def test_with_no_window_the_intent_is_closed_as_never_made(home: Path, tmp_path: Path, memory_store: Store,
                                                           window: str | None) -> None:
    """``settle_window: 0`` — and the local provider's own default — closes it at once, as before."""
    loaded = local_spec(tmp_path, window)
    assert driver_of(Providers(loaded).get("here")).listing_lag == 0.0
    infra = recorded_infrastructure(memory_store, loaded, state="creating")
    _, intent = interrupted_create(memory_store, infra)
    assert settle(memory_store, infra, loaded)[0] == 1
    assert state_of(memory_store, infra, intent.id) == ("resolved", "adopted 0, terminated 0 surplus, 2 never made")
    assert memory_store.open_intents(infra.id) == []
    assert {n.state for n in memory_store.nodes(infra.id)} == {"pending"}


def test_a_cloud_provider_waits_a_minute_by_default(tmp_path: Path, memory_store: Store) -> None:
    loaded = dummy_spec(tmp_path, None)
    assert driver_of(Providers(loaded).get("here")).listing_lag == 60.0 == AwsProvider.listing_lag
    assert LocalProvider.listing_lag == 0.0
    infra = recorded_infrastructure(memory_store, loaded, state="creating")
    _, intent = interrupted_create(memory_store, infra)
    assert settle(memory_store, infra, loaded)[0] == 0
    assert state_of(memory_store, infra, intent.id)[0] == "open"
    age(memory_store, intent.id, timedelta(seconds=61))
    assert settle(memory_store, infra, loaded)[0] == 1
    assert state_of(memory_store, infra, intent.id) == ("resolved", "adopted 0, terminated 0 surplus, 2 never made")


def test_what_a_young_intent_lists_is_settled_at_once(tmp_path: Path, memory_store: Store) -> None:
    """The window only stops an *empty* answer from being believed: machines that are listed are adopted."""
    loaded = dummy_spec(tmp_path, "1h")
    infra = recorded_infrastructure(memory_store, loaded, state="creating")
    _, intent = interrupted_create(memory_store, infra)
    providers = Providers(loaded)
    made = make_tagged(providers, intent.id, ["s-web-1", "s-web-2"])
    assert settle(memory_store, infra, loaded, providers)[0] == 1
    assert state_of(memory_store, infra, intent.id) == ("resolved", "adopted 2, terminated 0 surplus, 0 never made")
    assert {n.name: n.provider_id for n in memory_store.nodes(infra.id)} == {i.name: i.id for i in made}
    asyncio.run(providers.close())


def test_down_does_not_wait_for_the_window(home: Path, tmp_path: Path, memory_store: Store) -> None:
    """``down`` sweeps by the infrastructure's tag next; an intent left open for good would hide from ``gc``
    whatever the cloud shows late (gc spares the machines of intents in flight)."""
    loaded = local_spec(tmp_path, "1h")
    infra = recorded_infrastructure(memory_store, loaded)
    _, intent = interrupted_create(memory_store, infra)
    memory_store.set_infrastructure_state(infra.id, InfraState.DESTROYING)
    assert settle(memory_store, infra, loaded)[0] == 1
    assert state_of(memory_store, infra, intent.id)[0] == "resolved"


# -- an intent left open, then its rows created again -------------------------------------------------------


def make_tagged(providers: Providers, intent_id: str, names: Sequence[str]) -> list[Instance]:
    request = CreateRequest(count=len(names), image="Ubuntu 9.10", size=None, tags={TAG_INTENT: intent_id},
                            ssh_user="deploy", ssh_public_key="ssh-ed25519 AAAA test", names=list(names))
    return asyncio.run(providers.get("here").create(request))


def test_machines_another_intent_adopted_since_are_not_terminated(tmp_path: Path, memory_store: Store) -> None:
    """Left open, an intent can be overtaken: the next run creates its rows again with the same request token,
    and EC2 answers with the first call's machines (which carry the old intent's tag).  When the old intent
    is settled at last, those machines are tracked by live rows: left alone, not terminated as surplus."""
    loaded = dummy_spec(tmp_path, "0")
    infra = recorded_infrastructure(memory_store, loaded, state="creating")
    rows, intent = interrupted_create(memory_store, infra)
    providers = Providers(loaded)
    made = make_tagged(providers, intent.id, ["s-web-1", "s-web-2"])
    for row, instance in zip(rows, made, strict=True):  # what the later intent's close wrote
        memory_store.update_node(row.id, provider_id=instance.id, state="booting")
    assert settle(memory_store, infra, loaded, providers)[0] == 1
    assert state_of(memory_store, infra, intent.id) == (
        "resolved", "adopted 0, terminated 0 surplus, 0 never made, 2 already tracked")
    assert sorted(i.id for i in asyncio.run(providers.get("here").list({TAG_INTENT: intent.id}))) == sorted(
        i.id for i in made)
    asyncio.run(providers.close())


# -- the setting -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("60s", 60.0), ("90", 90.0), ("1m30s", 90.0), ("0", 0.0),
                                                ("2.5", 2.5), ("500ms", 0.5)])
def test_the_setting_is_a_duration(home: Path, tmp_path: Path, value: str, seconds: float) -> None:
    loaded = local_spec(tmp_path, value)
    checked = loaded.spec.providers["here"].settings["settle_window"]
    assert checked == seconds
    assert driver_of(make_provider("here", "local", {"settle_window": checked})).listing_lag == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("-1", r"providers\.here\.settle_window: -1 is negative"),
    ("soon", r"providers\.here\.settle_window: .*'soon' is not a duration"),
    ('"60"', r"providers\.here\.settle_window: .*'60' has no unit"),
    ("true", r"providers\.here\.settle_window: .*not true/false"),
])
def test_a_bad_setting_is_a_spec_error_at_its_line(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(SpecError, match=r"cloudherd\.yml:3: " + message):
        local_spec(tmp_path, value)
    from_code = {"-1": -1, "soon": "soon", '"60"': "60", "true": True}[value]
    with pytest.raises(InvalidRequestError, match=r"provider here \(libcloud\): settle_window: "):
        make_provider("here", "libcloud", {"driver": "dummy", "settle_window": from_code})


def test_the_setting_is_not_the_drivers(tmp_path: Path) -> None:
    """Like the budget's keys it never reaches the driver's own settings (libcloud would hand it to its driver)."""
    provider = make_provider("here", "libcloud", {"driver": "libcloud_wire:BulkDummyDriver", "key": 0,
                                                  "settle_window": "5s"})
    driver = driver_of(provider)
    assert "settle_window" not in driver.settings and driver.listing_lag == 5.0
    assert driver_of(make_provider("other", "libcloud", {"driver": "libcloud_wire:BulkDummyDriver",
                                                         "key": 0})).listing_lag == 60.0
