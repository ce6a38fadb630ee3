"""The gce provider against a Compute API server on 127.0.0.1 (tests/support/gce_wire.py) that speaks GCE's REST JSON.

The real google-cloud-compute client (REST transport) talks to it over HTTP; nothing of cloudherd is mocked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.cloud.compute_v1")

from gce_wire import FakeGce  # tests/ is on sys.path (pytest's rootdir-relative import)
from google.auth import credentials as google_credentials

from cloudherd.providers import Provider, make_provider
from cloudherd.providers.base import (
    AuthError,
    CapacityError,
    CreateRequest,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    QuotaError,
    SizeNeed,
    ThrottledError,
    TransientError,
)
from cloudherd.providers.gce import (
    GceProvider,
    OperationTimeoutError,
    decode_label,
    decode_labels,
    encode_label,
    encode_labels,
    instance_name,
    label_key,
    request_id,
    tag_key,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm8fOKWKm0JyQkqLlrcMy52Rb5ZKk6y7n9bZPf8p6xq test@cloudherd"
ZONE = "us-central1-a"


def provider(fake: FakeGce, **settings: Any) -> GceProvider:
    base: dict[str, Any] = {"project": fake.project, "zone": ZONE, "endpoint": fake.url, "anonymous": True,
                            "poll_interval": 0.05}
    base.update(settings)
    return GceProvider("gcp", base)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def from_spec(folder: Path, fake: FakeGce, **settings: Any) -> Provider:
    """A provider made the way users make one: a spec file's entry, loaded and checked, then make_provider."""
    from cloudherd.spec import load_spec

    entry = {"type": "gce", "project": fake.project, "zone": ZONE, "endpoint": fake.url, "anonymous": True,
             "poll_interval": 0.05, **settings}
    path = folder / f"spec-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(f"name: t\nproviders:\n  gcp: {json.dumps(entry)}\ngroups:\n  web: {{provider: gcp}}\n")
    config = load_spec(path).spec.providers["gcp"]
    return make_provider("gcp", config.type, config.model_extra or {})


def fresh_tags(group: str = "web") -> dict[str, str]:
    return {"cloudherd:infra": uuid.uuid4().hex[:12], "cloudherd:group": group, "cloudherd:owner": "alice"}


def request(count: int, tags: dict[str, str], **kwargs: Any) -> CreateRequest:
    fields: dict[str, Any] = {"image": "debian-12", "size": "e2-small", "ssh_user": "deploy", "ssh_public_key": KEY}
    fields.update(kwargs)
    return CreateRequest(count=count, tags=tags, **fields)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.startswith("gce"), text
    return text


# -- create / list / terminate -------------------------------------------------------------------------


def test_create_three_is_one_bulk_insert(fake: FakeGce) -> None:
    p = provider(fake)
    tags = fresh_tags()
    names = ["hello-web-0", "hello-web-1", "hello-web-2"]
    made = run(p.create(request(3, tags, names=names, token="inf1-web", image="ubuntu-24.04")))

    assert fake.calls["instances.bulkInsert"] == 1
    assert [i.name for i in made] == names and [i.id for i in made] == names
    for instance in made:
        assert instance.state == "running"
        assert instance.address and instance.address.startswith("34.66.")
        assert instance.private_address and instance.private_address.startswith("10.128.")
        assert instance.tags == tags
        assert instance.ssh_user == "deploy"
        assert instance.extra["zone"] == ZONE and instance.extra["type"] == "e2-small"

    sent = fake.last("instances.bulkInsert")
    assert sent["query"]["requestId"] == request_id("inf1-web", names)
    body = sent["body"]
    assert int(body["count"]) == 3 and int(body["minCount"]) == 3
    assert sorted(body["perInstanceProperties"]) == names
    props = body["instanceProperties"]
    assert props["machineType"] == "e2-small"
    assert props["labels"] == {"cloudherd_infra": tags["cloudherd:infra"], "cloudherd_group": "web",
                               "cloudherd_owner": "alice"}
    assert props["metadata"]["items"] == [{"key": "ssh-keys", "value": f"deploy:{KEY}"}]
    [disk] = props["disks"]
    assert disk["boot"] and disk["autoDelete"]
    assert disk["initializeParams"]["sourceImage"] == \
        "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
    [nic] = props["networkInterfaces"]
    assert nic["accessConfigs"] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    assert nic["network"] == f"projects/{fake.project}/global/networks/default"


def test_request_id_is_a_stable_uuid() -> None:
    assert request_id("inf1-web") == request_id("inf1-web") != request_id("inf1-db")
    assert uuid.UUID(request_id("inf1-web")).version == 5
    assert request_id("inf1-web", ["a-0"]) == request_id("inf1-web", ["a-0"]) != request_id("inf1-web", ["a-1"])


def test_retried_create_with_the_same_token_makes_nothing_new(fake: FakeGce) -> None:
    p = provider(fake)
    tags = fresh_tags()
    first = run(p.create(request(2, tags, names=["r-0", "r-1"], token="retry-me")))
    again = run(p.create(request(2, tags, names=["r-0", "r-1"], token="retry-me")))
    assert fake.calls["instances.bulkInsert"] == 2
    assert [r["query"]["requestId"] for r in fake.requests if r["call"] == "instances.bulkInsert"] == \
        [request_id("retry-me", ["r-0", "r-1"])] * 2
    assert [i.id for i in again] == [i.id for i in first] and fake.names() == ["r-0", "r-1"]
    # the same token later with other names (the group grew): a new request, new machines
    more = run(p.create(request(1, tags, names=["r-2"], token="retry-me")))
    assert [i.id for i in more] == ["r-2"] and fake.names() == ["r-0", "r-1", "r-2"]


def test_list_follows_pages_filters_on_labels_and_decodes_tags(fake: FakeGce) -> None:
    p = provider(fake)
    tags = fresh_tags()
    tags["cloudherd:owner"] = "Jane.Doe@Example"  # not label-safe: escaped, and decoded back
    made = run(p.create(request(5, tags, token="five")))  # no names: a name pattern
    assert len(made) == 5 and all(i.name.startswith("ch-") for i in made)
    fake.add_instance("stranger", {"cloudherd_infra": "someone-else"})
    fake.add_instance("other-zone", {"cloudherd_infra": tags["cloudherd:infra"]}, zone="us-central1-b")

    before = fake.calls["instances.list"]
    found = run(p.list({"cloudherd:infra": tags["cloudherd:infra"]}))
    assert fake.calls["instances.list"] - before == 3  # 5 instances, pages of 2
    assert sorted(i.id for i in found) == sorted(i.id for i in made)
    assert all(i.tags == tags for i in found)
    assert all(i.ssh_user == "deploy" for i in found)  # read back from the ssh-keys metadata
    sent = fake.last("instances.list")
    assert sent["query"]["pageToken"] == "4"
    assert f'(labels.cloudherd_infra = "{tags["cloudherd:infra"]}")' in sent["query"]["filter"]

    both = run(p.list({"cloudherd:infra": tags["cloudherd:infra"], "cloudherd:owner": tags["cloudherd:owner"]}))
    assert len(both) == 5
    assert run(p.list({"cloudherd:infra": tags["cloudherd:infra"], "cloudherd:group": "db"})) == []
    assert {i.id for i in run(p.list({}))} == {i.id for i in made} | {"stranger"}


def test_states_are_mapped(fake: FakeGce) -> None:
    p = provider(fake)
    tags = fresh_tags()
    names = ["s-prov", "s-stag", "s-run", "s-stopping", "s-term", "s-susp"]
    run(p.create(request(len(names), tags, names=names)))
    for name, status in zip(names, ["PROVISIONING", "STAGING", "RUNNING", "STOPPING", "TERMINATED", "SUSPENDED"],
                            strict=True):
        fake.set_status(name, status)
    states = {i.name: (i.state, i.extra["gce_status"]) for i in run(p.list(tags))}
    assert states == {"s-prov": ("pending", "PROVISIONING"), "s-stag": ("pending", "STAGING"),
                      "s-run": ("running", "RUNNING"), "s-stopping": ("stopped", "STOPPING"),
                      "s-term": ("stopped", "TERMINATED"), "s-susp": ("stopped", "SUSPENDED")}


def test_create_waits_for_addresses(fake: FakeGce) -> None:
    fake.boot_lists = 1  # new instances stay STAGING, without an external IP, for one list
    made = run(provider(fake).create(request(2, fresh_tags(), names=["boot-0", "boot-1"])))
    assert fake.calls["instances.list"] == 2
    assert all(i.state == "running" and i.address and i.address.startswith("34.") for i in made)


def test_terminate_removes_them_and_ignores_the_gone(fake: FakeGce) -> None:
    p = provider(fake)
    tags = fresh_tags()
    made = run(p.create(request(3, tags, names=["t-0", "t-1", "t-2"])))
    fake.add_instance("keep-me", {"cloudherd_infra": "other"})
    run(p.terminate([i.id for i in made] + ["never-was", "t-0"]))
    assert fake.calls["instances.delete"] == 4  # once per distinct name
    assert fake.calls["zoneOperations.wait"] >= 3
    assert fake.names() == ["keep-me"]
    assert run(p.list(tags)) == []
    run(p.terminate([i.id for i in made]))  # all gone already: not an error


def test_stop_and_start(fake: FakeGce) -> None:
    p = provider(fake)
    tags = fresh_tags()
    made = run(p.create(request(2, tags, names=["ss-0", "ss-1"])))
    run(p.stop([made[0].id]))
    states = {i.id: i for i in run(p.list(tags))}
    assert states["ss-0"].state == "stopped" and states["ss-0"].extra["gce_status"] == "TERMINATED"
    assert states["ss-0"].address == states["ss-0"].private_address  # the ephemeral IP went with the stop
    assert states["ss-1"].state == "running"
    run(p.start([made[0].id]))
    again = {i.id: i for i in run(p.list(tags))}
    assert again["ss-0"].state == "running" and again["ss-0"].address and again["ss-0"].address.startswith("34.")
    with pytest.raises(NotFoundError) as err:
        run(p.stop(["no-such-vm"]))
    assert "no-such-vm" in one_line(err.value)


# -- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("failure", "kind", "words"), [
    ({"op_error": "ZONE_RESOURCE_POOL_EXHAUSTED", "status": 503,
      "message": "The zone 'projects/test-project/zones/us-central1-a' does not have enough resources available "
                 "to fulfill the request.  Try a different zone, or try again later."},
     CapacityError, ["ZONE_RESOURCE_POOL_EXHAUSTED", "another zone"]),
    ({"op_error": "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "status": 503,
      "message": "The zone does not have enough resources available to fulfill the request. "
                 "'(resource type:compute)'."},
     CapacityError, ["ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"]),
    ({"op_error": "QUOTA_EXCEEDED", "status": 403,
      "message": "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1."},
     QuotaError, ["QUOTA_EXCEEDED", "CPUS", "higher quota"]),
    ({"status": 403, "reason": "quotaExceeded",
      "message": "Quota 'INSTANCES' exceeded. Limit: 8.0 in region us-central1."},
     QuotaError, ["quotaExceeded"]),
    ({"status": 429, "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"},
     ThrottledError, ["rateLimitExceeded", "retry"]),
    ({"status": 403, "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}, ThrottledError, ["retry"]),
    ({"status": 403, "reason": "forbidden",
      "message": "Required 'compute.instances.create' permission for 'projects/test-project/zones/us-central1-a'"},
     AuthError, ["compute.instances.create", "roles/compute"]),
    ({"status": 401, "reason": "authError", "message": "Request had invalid authentication credentials."},
     AuthError, ["credentials"]),
    ({"op_error": "RESOURCE_NOT_FOUND", "status": 404,
      "message": "The resource 'projects/debian-cloud/global/images/family/debian-99' was not found"},
     NotFoundError, ["RESOURCE_NOT_FOUND", "debian-99"]),
    ({"status": 400, "reason": "invalid", "message": "Invalid value for field 'resource.count': '0'."},
     InvalidRequestError, ["Invalid value"]),
])
def test_errors_are_typed(fake: FakeGce, failure: dict[str, Any], kind: type[Exception], words: list[str]) -> None:
    fake.fail("instances.bulkInsert", **failure)
    with pytest.raises(kind) as err:
        run(provider(fake).create(request(2, fresh_tags(), names=["e-0", "e-1"])))
    text = one_line(err.value)
    assert all(w in text for w in words), text
    assert fake.calls["instances.bulkInsert"] == 1 and fake.names() == []  # all or nothing
    assert isinstance(err.value, ProviderError)


def test_throttled_list_is_typed(fake: FakeGce) -> None:
    fake.fail("instances.list", status=429, reason="rateLimitExceeded", message="Rate Limit Exceeded")
    with pytest.raises(ThrottledError):
        run(provider(fake).list({"cloudherd:infra": "x"}))


FAST = {"retries": 3, "backoff": 0.001, "backoff_max": 0.01}


def test_the_budget_retries_5xx_and_throttling_but_never_capacity(fake: FakeGce, tmp_path: Path) -> None:
    p = from_spec(tmp_path, fake, **FAST)
    fake.fail("instances.list", status=503, reason="backendError", message="Backend Error", times=2)
    assert run(p.list({"cloudherd:infra": "x"})) == []
    assert fake.calls["instances.list"] == 3  # two 503s, then the answer: the budget's retries, no other layer
    fake.fail("instances.list", status=429, reason="rateLimitExceeded", message="Rate Limit Exceeded", times=1)
    assert run(p.list({"cloudherd:infra": "x"})) == [] and fake.calls["instances.list"] == 5
    fake.fail("instances.list", status=503, reason="backendError", message="Backend Error", times=9)
    with pytest.raises(TransientError, match="gave up after 3 attempts") as gave_up:
        run(p.list({"cloudherd:infra": "x"}))
    assert (gave_up.value.code, gave_up.value.status, gave_up.value.attempts) == ("backendError", 503, 3)
    fake.failures.clear()
    fake.fail("instances.bulkInsert", op_error="ZONE_RESOURCE_POOL_EXHAUSTED", status=503, message="no room")
    with pytest.raises(CapacityError) as capacity:
        run(p.create(request(2, fresh_tags(), names=["c-0", "c-1"])))
    assert fake.calls["instances.bulkInsert"] == 1 and capacity.value.code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    fake.fail("instances.list", status=403, reason="forbidden", message="Required 'compute.instances.list'")
    with pytest.raises(AuthError):
        run(p.list({}))
    assert fake.calls["instances.list"] == 9


def test_spec_settings_reach_the_driver(fake: FakeGce, tmp_path: Path) -> None:
    p = from_spec(tmp_path, fake, operation_timeout="7.5", source_ranges=["10.0.0.0/8"], retries=2)
    driver = p.inner  # type: ignore[attr-defined]
    assert isinstance(driver, GceProvider) and driver.operation_timeout == 7.5
    assert driver.settings["source_ranges"] == ["10.0.0.0/8"] and "retries" not in driver.settings
    assert p.attempts == 2  # type: ignore[attr-defined]
    from cloudherd.errors import SpecError

    with pytest.raises(SpecError, match=r":3: providers\.gcp\.operation_timeout: .*greater than 0"):
        from_spec(tmp_path, fake, operation_timeout=0)


class StaticToken(google_credentials.Credentials):
    """A google.auth credentials object holding one access token (as from a metadata server or gcloud)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._access_token = token

    def refresh(self, request: Any) -> None:
        self.token = self._access_token


def test_credentials_never_appear_in_errors_or_logs(fake: FakeGce, caplog: pytest.LogCaptureFixture) -> None:
    secret = "ya29.a0AfB_" + uuid.uuid4().hex + "SeCrEt"
    caplog.set_level(logging.DEBUG)
    p = provider(fake, anonymous=False, credentials=StaticToken(secret))
    fake.require_token = secret
    run(p.create(request(1, fresh_tags(), names=["auth-0"])))
    assert fake.last("instances.bulkInsert")["headers"]["authorization"] == f"Bearer {secret}"

    fake.require_token = "something-else"  # the token was revoked
    with pytest.raises(AuthError) as refused:
        run(p.list({}))
    fake.require_token = None
    fake.fail("instances.list", status=403, reason="forbidden",
              message=f"Permission denied for Authorization: Bearer {secret} on project test-project")
    with pytest.raises(AuthError) as echoed:  # a server that quotes the token back: scrubbed
        run(p.list({}))
    for err in (refused, echoed):
        text = one_line(err.value)
        assert secret not in text and secret[:20] not in text
        assert err.value.__cause__ is None and err.value.__suppress_context__
    assert secret not in caplog.text


def test_credentials_files(fake: FakeGce, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.json"
    p = provider(fake, anonymous=False, credentials=str(missing))
    with pytest.raises(AuthError) as err:
        run(p.list({}))
    assert str(missing) in one_line(err.value)

    bogus = tmp_path / "sa.json"
    secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + uuid.uuid4().hex
    bogus.write_text(json.dumps({
        "type": "service_account", "project_id": "from-file", "private_key_id": uuid.uuid4().hex,
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n",
        "client_email": "ch@from-file.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"{fake.url}/token",
    }))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bogus))
    p = GceProvider("gcp", {"zone": ZONE, "endpoint": fake.url})
    assert p.project == "from-file"  # the project named in the credentials file
    with pytest.raises(AuthError) as err:
        run(p.list({}))
    assert secret not in one_line(err.value) and "BEGIN" not in str(err.value)
    assert fake.calls.total() == 0  # refused before anything was sent


def test_settings_from_the_environment(fake: FakeGce, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_PROJECT", "env-project")
    monkeypatch.setenv("GOOGLE_DATACENTER", "europe-west1-b")
    p = GceProvider("gcp", {"anonymous": True})
    assert (p.project, p.zone, p.region, p.type) == ("env-project", "europe-west1-b", "europe-west1", "gce")


def test_missing_project_or_zone_is_invalid(fake: FakeGce) -> None:
    with pytest.raises(InvalidRequestError) as err:
        GceProvider("gcp", {"zone": ZONE})
    assert "project" in one_line(err.value) and "GOOGLE_PROJECT" in str(err.value)
    with pytest.raises(InvalidRequestError) as err:
        GceProvider("gcp", {"project": "p"})
    assert "zone" in one_line(err.value) and "GOOGLE_DATACENTER" in str(err.value)
    with pytest.raises(InvalidRequestError):
        GceProvider("gcp", {"project": "p", "zone": ZONE, "operation_timeout": "soon"})


def test_an_operation_answered_running_is_waited_on_again(fake: FakeGce) -> None:
    fake.running_waits = 3  # like GCE's wait, which answers RUNNING when its own time is up
    made = run(provider(fake).create(request(1, fresh_tags(), names=["patient-0"])))
    assert [i.name for i in made] == ["patient-0"]
    assert fake.calls["zoneOperations.wait"] == 4  # three answers RUNNING, the fourth DONE


def test_operation_wait_is_bounded(fake: FakeGce) -> None:
    fake.hang_operations = True  # operations never finish; each wait is held a little, then answered RUNNING
    p = provider(fake, operation_timeout=0.4)
    with pytest.raises(OperationTimeoutError) as err:
        run(p.create(request(1, fresh_tags(), names=["slow-0"])))
    assert fake.calls["zoneOperations.wait"] >= 1  # looked at at least once, however long the insert call took
    text = one_line(err.value)
    assert "not done after 0.4 s" in text and "operation_timeout" in text
    assert isinstance(err.value, ProviderError)


def test_operation_wait_is_bounded_when_the_server_holds_the_call(fake: FakeGce) -> None:
    fake.hang_operations = True
    fake.wait_hold = 120.0  # held until released: only our own deadline can end the create
    p = provider(fake, operation_timeout=0.5)
    try:
        with pytest.raises(OperationTimeoutError, match=r"not done after 0\.5 s"):
            run(p.create(request(1, fresh_tags(), names=["held-0"])))
        assert fake.held >= 1  # the server was still holding the wait when the create gave up on it
    finally:
        fake.release_held()


# -- catalogs ------------------------------------------------------------------------------------------


def test_sizes_and_choosing_by_need(fake: FakeGce) -> None:
    p = provider(fake)
    e2 = run(p.sizes("e2"))
    assert [s.name for s in e2] == ["e2-highcpu-8", "e2-highmem-2", "e2-medium", "e2-micro", "e2-small",
                                    "e2-standard-2", "e2-standard-4"]
    small = next(s for s in e2 if s.name == "e2-small")
    assert (small.cpus, small.memory_mb, small.extra["shared_cpu"]) == (2.0, 2048, True)
    every = [s.name for s in run(p.sizes())]
    assert "n1-ancient-1" not in every and "f1-micro" in every  # obsolete types are left out
    assert fake.calls["machineTypes.list"] == 2  # 12 types in pages of 6; then cached
    assert run(p.default_size()) == "e2-small"

    made = run(p.create(request(1, fresh_tags(), size=None, size_need=SizeNeed(cpus=4, memory_mib=12000),
                                names=["big-0"])))
    assert fake.last("instances.bulkInsert")["body"]["instanceProperties"]["machineType"] == "e2-standard-4"
    assert made[0].extra["type"] == "e2-standard-4"
    run(p.create(request(1, fresh_tags(), size=None, names=["dflt-0"])))
    assert fake.last("instances.bulkInsert")["body"]["instanceProperties"]["machineType"] == "e2-small"
    with pytest.raises(InvalidRequestError):
        run(p.create(request(1, fresh_tags(), size=None, size_need=SizeNeed(cpus=64), names=["huge-0"])))
    assert fake.calls["machineTypes.list"] == 2


def test_images_and_regions(fake: FakeGce) -> None:
    p = provider(fake)
    fake.images.append({"kind": "compute#image", "id": "77", "name": "golden-web-7", "family": "golden-web",
                        "status": "READY", "creationTimestamp": "2024-05-01T10:00:00.000-07:00"})
    images = {i.name: i for i in run(p.images())}
    assert images["debian-12"].id == "projects/debian-cloud/global/images/family/debian-12"
    assert images["ubuntu-24.04"].id == "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
    assert images["golden-web-7"].id == f"projects/{fake.project}/global/images/golden-web-7"
    assert [i.name for i in run(p.images("golden"))] == ["golden-web-7"]
    assert p.source_image("debian-12", "t2a-standard-1") == "projects/debian-cloud/global/images/family/debian-12-arm64"
    assert p.source_image("family/golden-web") == f"projects/{fake.project}/global/images/family/golden-web"
    assert p.source_image("projects/x/global/images/y") == "projects/x/global/images/y"
    with pytest.raises(NotFoundError):
        p.source_image("Not An Image!")
    assert run(p.regions()) == sorted(fake.zones)


def test_ports_open_one_firewall_rule_per_group_which_goes_with_the_group(fake: FakeGce) -> None:
    p = provider(fake)
    tags = fresh_tags()
    rule_name = f"cloudherd-{tags['cloudherd:infra']}-web"
    run(p.create(request(1, tags, names=["fw-0"], ports=[443, 80])))
    run(p.create(request(1, tags, names=["fw-1"], ports=[80, 443])))
    assert fake.calls["firewalls.insert"] == 1 and fake.calls["instances.bulkInsert"] == 2
    rule = fake.firewalls[rule_name]
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["22", "80", "443"]}]
    assert rule["targetTags"] == [rule_name] and rule["direction"] == "INGRESS"
    assert fake.last("instances.bulkInsert")["body"]["instanceProperties"]["tags"]["items"] == [rule_name]
    run(p.create(request(1, tags, names=["fw-2"], ports=[8080])))  # a new port is added to the same rule
    assert fake.firewalls[rule_name]["allowed"] == [{"IPProtocol": "tcp", "ports": ["22", "80", "443", "8080"]}]
    other = fresh_tags("db")
    run(p.create(request(1, other, names=["fw-db"], ports=[5432])))
    assert len(fake.firewalls) == 2  # a rule per group

    run(p.terminate(["fw-0"]))  # the group still has instances: its rule stays
    assert rule_name in fake.firewalls
    run(p.terminate(["fw-1", "fw-2"]))  # its last ones: the rule goes with them
    assert rule_name not in fake.firewalls and len(fake.firewalls) == 1
    run(p.terminate(["fw-db"]))
    assert fake.firewalls == {}


def test_open_and_close_ports_are_symmetric_steps(fake: FakeGce) -> None:
    p = provider(fake)
    tags = fresh_tags()
    assert p.supports("ports") and not provider(fake, firewall=False).supports("ports")
    handle = run(p.open_ports(tags, [80]))
    assert (handle.kind, handle.ports) == ("firewall", (22, 80)) and handle.name in fake.firewalls
    assert run(p.open_ports(tags, [80])) == handle and fake.calls["firewalls.insert"] == 1  # idempotent
    listed = run(p.list_ports({"cloudherd:infra": tags["cloudherd:infra"]}))
    assert [(h.name, dict(h.tags)) for h in listed] == [
        (handle.name, {"cloudherd:infra": tags["cloudherd:infra"], "cloudherd:group": "web"})]
    made = run(p.create(request(1, tags, names=["sym-0"], ports=[80])))
    run(p.close_ports(tags))  # an instance still carries it: it stays
    assert handle.name in fake.firewalls
    fake.instances.clear()  # the instance vanished behind our back (a crash, a console delete)
    run(p.close_ports(tags))
    assert fake.firewalls == {} and made
    run(p.close_ports(tags))  # nothing left to close: not an error
    assert run(p.list_ports({})) == []


def test_bad_requests_fail_before_any_call(fake: FakeGce) -> None:
    p = provider(fake)
    with pytest.raises(InvalidRequestError):
        run(p.create(request(1, {"cloudherd:infra": "x" * 64})))
    with pytest.raises(InvalidRequestError):
        run(p.create(request(2, fresh_tags(), names=["only-one"])))
    with pytest.raises(InvalidRequestError):
        run(p.create(request(1, fresh_tags(), ssh_user="Bad User")))
    assert run(p.create(request(0, fresh_tags()))) == []
    assert fake.calls.total() == 0


def test_names_are_made_valid(fake: FakeGce) -> None:
    assert instance_name("hello-web-0") == "hello-web-0"
    odd = instance_name("9Lives_Web.0")
    assert odd.startswith("n-9lives-web-0-") and len(odd) <= 63
    assert instance_name("x" * 80) != instance_name("x" * 81) and len(instance_name("x" * 80)) == 63
    made = run(provider(fake).create(request(1, fresh_tags(), names=["Web_One"])))
    assert made[0].name == instance_name("Web_One") and fake.names() == [made[0].name]


# -- labels --------------------------------------------------------------------------------------------


def test_labels_round_trip() -> None:
    assert label_key("cloudherd:infra") == "cloudherd_infra" and tag_key("cloudherd_infra") == "cloudherd:infra"
    assert encode_labels({"cloudherd:group": "web", "team": "db-1"}) == {"cloudherd_group": "web", "team": "db-1"}
    rng = random.Random(7)
    alphabet = "abcz09-_:.:AZ/@ éß€" + chr(0x1F600)
    samples = ["", ":", "::", ":-", "a:", ":a", "_", "__", "x_-0", "x:", "Name", "9lives", "a::b", ":_:"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    for text in samples:
        encoded = encode_label(text)
        assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in encoded), (text, encoded)
        assert decode_label(encoded) == text, (text, encoded)
        key = label_key(text)
        assert key[:1].isalpha() and key[:1].islower(), (text, key)
        assert tag_key(key) == text
    assert decode_labels({"env": "prod", "goog-managed": "true"}) == {"env": "prod", "goog-managed": "true"}


def test_cloudherd_imports_without_the_sdk() -> None:
    probe = ("import sys; sys.modules['google.cloud.compute_v1'] = None\n"
             "import cloudherd.providers.gce as g\n"
             "from cloudherd.providers import MissingDependencyError\n"
             "try:\n    g.GceProvider('gcp', {'project': 'p', 'zone': 'z'})\n"
             "except MissingDependencyError as e:\n    print('missing:', e)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "missing:" in result.stdout and "pip install 'cloudherd[gce]'" in result.stdout


def test_an_unreachable_endpoint_is_transient(fake: FakeGce) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    p = provider(fake, endpoint=f"http://user:hunter2@127.0.0.1:{port}", request_timeout=2)
    with pytest.raises(TransientError) as err:  # retried by the rate budget
        run(p.list({}))
    text = one_line(err.value)
    assert f"127.0.0.1:{port}" in text and "hunter2" not in text
