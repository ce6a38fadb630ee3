"""Issue #26, items 15 to 18, against a real `cloudherd serve` (boto3's stock client, raw signed calls, the native
routes): a group's size has a ceiling on every face (server.yml's ``max_group_size``, AWS's ValidationError on
the Query API); a refused Query API call writes nothing; what XML 1.0 cannot carry is refused at input and
never written out; a JSON body holding a lone surrogate is a 400 with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import httpx
import pytest
from helpers import cli
from server_harness import Served, serving, write_config

from cloudherd.spec.loader import load_spec_text
from cloudherd.state.db import open_engine
from cloudherd.state.repo import Store

boto3 = pytest.importorskip("boto3")
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

CEILING = 5  # this module's server.yml: max_group_size
NS = "{http://autoscaling.amazonaws.com/doc/2011-01-01/}"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("bounds")
    with serving(folder / "cloudherd-home", folder, interval=30, max_group_size=CEILING) as running:
        yield running  # its exit ends what local nodes the server made


@pytest.fixture(scope="module")
def keys(served: Served) -> dict[str, str]:
    return served.aws_keys()


@pytest.fixture(scope="module")
def client(served: Served, keys: dict[str, str]) -> Any:
    made = boto3.client("autoscaling", endpoint_url=served.url + "/autoscaling", region_name="us-east-1",
                        aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"])
    made.create_launch_configuration(LaunchConfigurationName="lc", ImageId="debian-12", InstanceType="small")
    return made


def refusal(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    answer = caught.value.response
    return answer["Error"]["Code"], answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Message"]


def group(client: Any, name: str) -> dict[str, Any]:
    return dict(client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0])


def tags_of(client: Any, name: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in group(client, name)["Tags"]}


def signed(served: Served, keys: dict[str, str], fields: list[tuple[str, str]] | str) -> httpx.Response:
    """A Query API call signed as boto3 signs it, of a form written by hand (what boto3 would refuse to send)."""
    body = fields if isinstance(fields, str) else "&".join(
        f"{quote(k, safe='', errors='surrogatepass')}={quote(v, safe='', errors='surrogatepass')}" for k, v in fields)
    request = AWSRequest(method="POST", url=f"{served.url}/autoscaling", data=body.encode(),
                         headers={"Content-Type": FORM})
    SigV4Auth(Credentials(keys["access_key_id"], keys["secret_access_key"]), "autoscaling", "us-east-1").add_auth(
        request)
    prepared = request.prepare()
    return httpx.post(prepared.url, content=prepared.body, headers=dict(prepared.headers.items()), timeout=30)


def aws_error(answer: httpx.Response) -> tuple[int, str, str]:
    """(status, code, message) of an AWS error answer, which must be well-formed XML."""
    assert answer.headers["content-type"].startswith("text/xml"), answer.text[:300]
    root = ElementTree.fromstring(answer.content)
    assert root.tag == f"{NS}ErrorResponse", answer.text[:300]
    return answer.status_code, root.findtext(f"{NS}Error/{NS}Code") or "", root.findtext(f"{NS}Error/{NS}Message") or ""


# -- 15: the ceiling -------------------------------------------------------------------------------------

def test_query_api_sizes_past_the_ceiling_are_validation_errors(client: Any) -> None:
    # a clouds tag capping the group at 0: were the ceiling not kept, no node would be made all the same
    capped = [{"ResourceId": "big", "ResourceType": "auto-scaling-group", "Key": "clouds", "Value": "local:0",
               "PropagateAtLaunch": False}]
    for sizes in ({"MinSize": 0, "MaxSize": 10**12}, {"MinSize": 0, "MaxSize": CEILING + 1},
                  {"MinSize": CEILING + 1, "MaxSize": CEILING + 1},
                  {"MinSize": 0, "MaxSize": CEILING, "DesiredCapacity": CEILING + 1}):
        code, status, message = refusal(client.create_auto_scaling_group, AutoScalingGroupName="big",
                                        LaunchConfigurationName="lc", Tags=capped, **sizes)
        assert (code, status) == ("ValidationError", 400), message
        assert f"less than or equal to {CEILING}" in message
    assert client.describe_auto_scaling_groups(AutoScalingGroupNames=["big"])["AutoScalingGroups"] == []
    client.create_auto_scaling_group(AutoScalingGroupName="sized", LaunchConfigurationName="lc", MinSize=0,
                                     MaxSize=CEILING, DesiredCapacity=0,
                                     Tags=[{**capped[0], "ResourceId": "sized"}])
    for call, kwargs in ((client.update_auto_scaling_group, {"MaxSize": CEILING + 1}),
                         (client.update_auto_scaling_group, {"MaxSize": 10**12, "MinSize": 10**11}),
                         (client.update_auto_scaling_group, {"DesiredCapacity": 2**63}),
                         (client.set_desired_capacity, {"DesiredCapacity": 10**12})):
        code, status, message = refusal(call, AutoScalingGroupName="sized", **kwargs)
        assert (code, status) == ("ValidationError", 400) and str(CEILING) in message, message
    assert (group(client, "sized")["MinSize"], group(client, "sized")["MaxSize"]) == (0, CEILING)


@pytest.mark.parametrize("value", ["99999999999999999999999999", "9" * 5000, "-1", "٣", "+3", "3_0", " 3", "1e3", ""])
def test_query_api_sizes_that_are_no_whole_numbers_are_validation_errors(served: Served, keys: dict[str, str],
                                                                         client: Any, value: str) -> None:
    answer = signed(served, keys, [("Action", "CreateAutoScalingGroup"), ("Version", "2011-01-01"),
                                   ("AutoScalingGroupName", "odd"), ("LaunchConfigurationName", "lc"),
                                   ("MinSize", "0"), ("MaxSize", value)])
    status, code, message = aws_error(answer)
    assert (status, code) == (400, "ValidationError"), message
    assert "MaxSize" in message and len(message) < 400


def test_native_and_occopus_scales_past_the_local_ceiling_are_400s(served: Served) -> None:
    api = served.client(served.token())
    # max 0: were a scale let through, it would be clamped to no node at all
    made = api.post("/v1/infrastructures?attach=false", content="name: sizes\ngroups:\n  web: {count: 0, max: 0}\n")
    assert made.status_code == 201, made.text
    scale = f"/v1/infrastructures/{made.json()['id']}/groups/web/scale"
    for change in ("=10001", "+99999", "999999999999", "=" + "9" * 11):
        answer = api.post(scale, json={"change": change})
        assert answer.status_code == 400 and "at most 10000" in answer.json()["detail"], (change, answer.text)
    answer = api.post(f"/infrastructures/{made.json()['id']}/scaleto/web/10001")
    assert answer.status_code == 422, answer.text  # Occopus' count is bounded by its route


def test_native_and_occopus_scales_past_the_servers_ceiling_are_400s(served: Served) -> None:
    from cloudherd.server.app import create_app
    from cloudherd.server.config import ServerConfig

    if create_app(ServerConfig(max_group_size=CEILING)).state.runtime.client.max_group_size != CEILING:
        pytest.skip("serve does not hand server.yml's max_group_size to its Client yet (server/app.py)")
    api = served.client(served.token())
    refused = api.post("/v1/infrastructures?attach=false",
                       content=f"name: knob\ngroups:\n  web: {{count: 0, max: {CEILING + 1}}}\n")
    assert refused.status_code == 400 and f"({CEILING}, its max_group_size)" in refused.json()["detail"]
    # no max of its own: the server's ceiling is the only bound (count 0, so nothing is made on the way)
    made = api.post("/v1/infrastructures?attach=false", content="name: knob\ngroups:\n  web: {count: 0}\n")
    assert made.status_code == 201, made.text
    answer = api.post(f"/v1/infrastructures/{made.json()['id']}/groups/web/scale", json={"change": f"={CEILING + 1}"})
    assert answer.status_code == 400 and f"at most {CEILING}" in answer.json()["detail"], answer.text
    answer = api.post(f"/infrastructures/{made.json()['id']}/scaleto/web/{CEILING + 1}")
    assert answer.status_code == 400 and f"at most {CEILING}" in answer.json()["detail"], answer.text


@pytest.mark.parametrize(("written", "taken"), [(None, 1000), ("1", 1), ("10000", 10000), ("0", None),
                                                ("-3", None), ("10001", None), ("true", None), ("2.5", None),
                                                ('"5"', None), ("99999999999999999999999", None)])
def test_max_group_size_is_a_checked_knob_of_server_yml(tmp_path: Path, written: str | None,
                                                        taken: int | None) -> None:
    from cloudherd.errors import UsageError
    from cloudherd.server.config import load_config

    extra = {} if written is None else {"max_group_size": written}
    path = write_config(tmp_path, {"local": "local"}, **extra)
    if taken is not None:
        assert load_config(path).max_group_size == taken
        return
    with pytest.raises(UsageError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: max_group_size must be a whole number of machines from 1 to 10000 "
                                 "(the most one group may have)")


@pytest.mark.usefixtures("home")
@pytest.mark.parametrize("change", ["=999999999999", "+10001", "=" + "9" * 40])
def test_a_local_scale_past_the_ceiling_is_one_clear_line(change: str) -> None:
    done = cli("scale", "nosuch", "web", change)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "at most 10000" in done.stderr


@pytest.mark.usefixtures("home")
def test_the_python_api_refuses_a_target_past_its_ceiling_before_writing(tmp_path: Path) -> None:
    from cloudherd.api.client import SyncClient
    from cloudherd.errors import UsageError

    spec = tmp_path / "cloudherd.yml"
    spec.write_text("name: capped\ngroups:\n  web: {count: 0}\n")
    with SyncClient() as herd:
        herd.init()
        infra_id = herd.submit(spec, attach=False)
        herd.aio.max_group_size = 3
        with pytest.raises(UsageError, match="at most 3"):
            herd.scale(infra_id, "web", "+4", run_pass=False)
        assert herd.aio.store.pending_scale_requests(infra_id) == []
        assert herd.scale(infra_id, "web", "=3", run_pass=False).target == 3


# -- 16: validate, then write ----------------------------------------------------------------------------

def test_refused_updates_and_tags_write_nothing(client: Any) -> None:
    client.create_auto_scaling_group(AutoScalingGroupName="keep", LaunchConfigurationName="lc", MinSize=0,
                                     MaxSize=3, DesiredCapacity=0)
    client.create_or_update_tags(Tags=[{"ResourceId": "keep", "ResourceType": "auto-scaling-group", "Key": "k1",
                                        "Value": "v1", "PropagateAtLaunch": True}])

    def tag(key: str, value: str, resource: str = "keep") -> dict[str, Any]:
        return {"ResourceId": resource, "ResourceType": "auto-scaling-group", "Key": key, "Value": value,
                "PropagateAtLaunch": False}

    refused_updates: list[dict[str, Any]] = [{"MinSize": 4, "MaxSize": 2}, {"MaxSize": CEILING + 1},
                                             {"LaunchConfigurationName": "nope"}, {"MinSize": 2, "DesiredCapacity": 1}]
    for kwargs in refused_updates:
        code, status, message = refusal(client.update_auto_scaling_group, AutoScalingGroupName="keep", **kwargs)
        assert (code, status) == ("ValidationError", 400), (kwargs, message)
    refused_tags = [[tag("clouds", "nowhere:1")], [tag("clouds", "garbage")], [tag("clouds", "local:٣")],
                    [tag("k2", "v2"), tag("clouds", "nowhere:1")], [tag("k2", "x" * 257)], [tag("k" * 129, "v")],
                    [tag("k2", "v2"), tag("k3", "v3", resource="missing")]]
    for tags in refused_tags:
        code, status, message = refusal(client.create_or_update_tags, Tags=tags)
        assert (code, status) == ("ValidationError", 400), (tags, message)
    code, _, _ = refusal(client.delete_tags, Tags=[tag("k1", ""), tag("k1", "", resource="missing")])
    assert code == "ValidationError"
    described = group(client, "keep")
    assert (described["MinSize"], described["MaxSize"], described["DesiredCapacity"]) == (0, 3, 0)
    assert described["LaunchConfigurationName"] == "lc"
    assert tags_of(client, "keep") == {"k1": "v1"}
    # and the group is still one that takes changes
    client.update_auto_scaling_group(AutoScalingGroupName="keep", MaxSize=4)
    client.create_or_update_tags(Tags=[tag("k2", "v2")])
    client.delete_tags(Tags=[tag("k1", "")])
    assert group(client, "keep")["MaxSize"] == 4
    assert tags_of(client, "keep") == {"k2": "v2"}


def test_what_users_write_reaches_the_spec_as_literal_text(served: Served, client: Any) -> None:
    """``${VAR}`` names nothing of the server's environment, and user data is never a path to a file on it."""
    client.create_launch_configuration(LaunchConfigurationName="literal", ImageId="${CLOUDHERD_HOME}",
                                       InstanceType="small", UserData="/etc/hostname")  # boto3 encodes it
    client.create_auto_scaling_group(AutoScalingGroupName="literal", LaunchConfigurationName="literal", MinSize=0,
                                     MaxSize=1, DesiredCapacity=0,
                                     Tags=[{"ResourceId": "literal", "ResourceType": "auto-scaling-group",
                                            "Key": "who", "Value": "${HOME}", "PropagateAtLaunch": True}])
    api = served.client(served.token())
    listed = api.get("/v1/infrastructures").json()
    infra = next(i for i in listed if i["name"].startswith("asg-literal-"))
    groups = api.get(f"/v1/infrastructures/{infra['id']}/groups").json()
    assert groups[0]["image"] == "${CLOUDHERD_HOME}" and groups[0]["tags"] == {"who": "${HOME}"}
    # the spec as stored, loaded as the manager loads it: its user data is the text given, not a file's
    store = Store(open_engine(f"sqlite:///{served.home / 'state.db'}"))
    try:
        row = store.infrastructure(infra["id"])
    finally:
        store.engine.dispose()
    loaded = load_spec_text(row.spec_text, Path(row.spec_path))
    assert [s.content for s in loaded.scripts["nodes"]] == ["/etc/hostname\n"]


# -- 17: what XML cannot carry ---------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "bad"), [
    ("AutoScalingGroupName", "x\uffff"), ("AutoScalingGroupName", "x\x01"), ("Tags.member.1.Value", "\x01"),
    ("Tags.member.1.Key", "k\ufffe"), ("LaunchConfigurationName", "l\x0b"), ("ImageId", "i\x1f"),
    ("InstanceType", "t\uffff"), ("KeyName", "k\x00"), ("UserData", "\x02"), ("SecurityGroups.member.1", "\x7f\x03"),
    ("AvailabilityZones.member.1", "z\x08"),
])
def test_characters_xml_cannot_carry_are_refused_at_input(served: Served, keys: dict[str, str], client: Any,
                                                          field: str, bad: str) -> None:
    action = "CreateLaunchConfiguration" if field in ("LaunchConfigurationName", "ImageId", "InstanceType", "KeyName",
                                                      "UserData", "SecurityGroups.member.1") \
        else "CreateAutoScalingGroup"
    fields = {"Action": action, "Version": "2011-01-01", "LaunchConfigurationName": "lc2", "ImageId": "debian-12",
              "AutoScalingGroupName": "named", "MinSize": "0", "MaxSize": "1", "Tags.member.1.Key": "k",
              "Tags.member.1.Value": "v", "Tags.member.1.ResourceId": "named"}
    fields[field] = bad
    status, code, message = aws_error(signed(served, keys, list(fields.items())))
    assert (status, code) == (400, "ValidationError") and f"'{field}'" in message, message
    assert "XML 1.0" in message
    # nothing was stored: every Describe of this user is still XML boto3 reads
    assert "named" not in {g["AutoScalingGroupName"]
                           for g in client.describe_auto_scaling_groups()["AutoScalingGroups"]}
    assert "lc2" not in {c["LaunchConfigurationName"]
                         for c in client.describe_launch_configurations()["LaunchConfigurations"]}
    client.describe_tags()


def test_parameter_names_and_lone_surrogates_are_refused_too(served: Served, keys: dict[str, str]) -> None:
    answer = signed(served, keys, [("Action", "DescribeAutoScalingGroups"), ("Version", "2011-01-01"),
                                   ("Bad\x01Name", "x")])
    status, code, message = aws_error(answer)
    assert (status, code) == (400, "ValidationError") and "parameter name" in message, message
    # a lone surrogate (bytes that are no UTF-8) is refused, not read as U+FFFD (a filter that matched nothing)
    for fields in ([("AutoScalingGroupNames.member.1", "x\ud800")], [("Action", "Describe\ud800")]):
        answer = signed(served, keys, [("Action", "DescribeAutoScalingGroups"), ("Version", "2011-01-01"), *fields])
        status, code, message = aws_error(answer)
        assert (status, code) == (400, "ValidationError") and "not UTF-8" in message, message


def test_the_xml_writer_never_writes_what_xml_cannot_carry() -> None:
    """Rows stored before the check (or by another face) are written out clean: U+FFFD in their place."""
    from datetime import datetime

    from cloudherd.api.autoscaling import ScalingGroupView, Tag
    from cloudherd.server.autoscaling import _group_xml
    from cloudherd.server.errors import aws_error

    bad = "a\x01b\uffff\ud800c<&>"
    view = ScalingGroupView(name=bad, infrastructure="i", launch_configuration=bad, min_size=0, max_size=1, desired=0,
                            zones=(bad,), instances=(), tags=(Tag(group=bad, key=bad, value=bad, propagate=True),),
                            status=None, created_at=datetime(2026, 1, 1))
    member = ElementTree.fromstring(_group_xml(view))
    assert member.findtext("AutoScalingGroupName") == "a\ufffdb\ufffd\ufffdc<&>"
    assert member.findtext("Tags/member/Value") == "a\ufffdb\ufffd\ufffdc<&>"
    answer = aws_error("ValidationError", f"no group {bad}", 400, "r")
    root = ElementTree.fromstring(bytes(answer.body))
    assert root.findtext(f"{NS}Error/{NS}Message") == "no group a\ufffdb\ufffd\ufffdc<&>"


# -- every error is XML -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raised", "status", "code"), [
    ("RuntimeError", 500, "InternalFailure"), ("SpecError", 400, "ValidationError"),
    ("UsageError", 400, "ValidationError"), ("BusyError", 400, "ScalingActivityInProgress"),
    ("StateError", 503, "ServiceUnavailable"),
])
def test_an_error_inside_an_action_is_aws_xml(home: Path, monkeypatch: pytest.MonkeyPatch, raised: str,
                                              status: int, code: str) -> None:
    """In-process (an action made to fail as no real request can): whatever it raises, the answer is AWS XML."""
    from starlette.testclient import TestClient

    from cloudherd import errors
    from cloudherd.engine.locks import BusyError
    from cloudherd.server import autoscaling
    from cloudherd.server.app import create_app

    done = cli("token", "create", "--aws", "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    kinds: dict[str, Exception] = {
        "RuntimeError": RuntimeError("a bug"), "SpecError": errors.SpecError("/srv/secret/x.yml", 3, "groups", "bad"),
        "UsageError": errors.UsageError("no such thing"), "BusyError": BusyError("another command holds it"),
        "StateError": errors.StateError("the database is away"),
    }

    async def boom(model: Any, params: Any) -> None:
        raise kinds[raised]

    monkeypatch.setitem(autoscaling.ACTIONS, "DescribeAutoScalingGroups", boom)  # type: ignore[index]
    request = AWSRequest(method="POST", url="http://testserver/autoscaling",
                         data=b"Action=DescribeAutoScalingGroups&Version=2011-01-01", headers={"Content-Type": FORM})
    SigV4Auth(Credentials(made["access_key_id"], made["secret_access_key"]), "autoscaling", "us-east-1").add_auth(
        request)
    prepared = request.prepare()
    http = TestClient(create_app(), raise_server_exceptions=False)  # no lifespan: no manager for one request
    answer = http.post("/autoscaling", content=prepared.body, headers=dict(prepared.headers.items()))
    assert aws_error(answer)[:2] == (status, code), answer.text


# -- 18: a lone surrogate in a JSON body ----------------------------------------------------------------

def test_a_lone_surrogate_in_a_json_body_is_a_400_with_the_reason(served: Served) -> None:
    api = served.client(served.token())
    made = api.post("/v1/infrastructures?attach=false", content="name: texts\ngroups:\n  web: {count: 0}\n")
    assert made.status_code == 201, made.text
    base = f"/v1/infrastructures/{made.json()['id']}"
    for path, body, where in [
        ("/exec", '{"command": "\\ud800"}', "body.command"),
        ("/exec", '{"command": "ls", "node": ["ok", "\\udfff"]}', "body.node[1]"),
        ("/groups/web/scale", '{"change": "\\ud800"}', "body.change"),
        ("/groups/web/scale", '{"change": "=0", "victims": ["\\ud800x"]}', "body.victims[0]"),
        ("/rollback", '{"revision": 1, "\\udc00": 2}', "body (a key)"),
    ]:
        answer = api.post(base + path, content=body.encode(), headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (path, body, answer.text)
        assert answer.json()["detail"].startswith(f"{where}: a lone surrogate"), answer.text
    # a surrogate pair is text (U+1F600): no refusal for it
    answer = api.post(base + "/groups/web/scale", content=b'{"change": "=0", "victims": ["\\ud83d\\ude00"]}',
                      headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "no live node" in answer.json()["detail"], answer.text
    assert api.post(base + "/groups/web/scale", json={"change": "=0"}).status_code == 202


@pytest.mark.parametrize(("text", "key", "line"), [
    ("name: big\ngroups:\n  web:\n    count: 4\n", "count", 4),
    ("name: big\ngroups:\n  web:\n    count: 1\n    max: 50\n", "max", 5),
    ("name: big\ngroups:\n  web:\n    count: 1\n    scaling: {min: 1, max: 9}\n", "max", 5),
])
def test_a_spec_sent_to_a_server_stays_within_its_max_group_size(tmp_path: Path, text: str, key: str,
                                                                  line: int) -> None:
    """The ceiling of the server's Auto Scaling and scale routes holds for a whole spec POSTed to it too."""
    from cloudherd.errors import SpecError
    from cloudherd.spec.confine import Confinement
    from cloudherd.spec.loader import load_spec_text

    path = tmp_path / "cloudherd.yml"
    path.write_text(text)
    with pytest.raises(SpecError, match=rf"cloudherd.yml:{line}: groups\.web\.{key}: .* more than this server "
                                        r"lets a group have \(3, its max_group_size\)"):
        load_spec_text(text, path, within=Confinement({"local": {"type": "local"}}, max_group_size=3))
    fine = text.replace("count: 4", "count: 3").replace("max: 50", "max: 3").replace("max: 9", "max: 3")
    assert load_spec_text(fine, path, within=Confinement({"local": {"type": "local"}}, max_group_size=3))
