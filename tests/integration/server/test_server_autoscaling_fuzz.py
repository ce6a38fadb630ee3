"""The Query API is not in /openapi.json (schemathesis does not see it): hypothesis throws forms at it instead,
signed correctly — a served Action, fields it knows and does not, member indexes of every kind, strings with
control characters, U+FFFF and lone surrogates, numbers of any size — and every answer must be well-formed AWS
XML: the Action's response, or an ErrorResponse with a 4xx status; never a 500, never JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import httpx
import pytest
from server_harness import Served, serving

boto3 = pytest.importorskip("boto3")
hypothesis = pytest.importorskip("hypothesis")
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cloudherd.server.autoscaling import ACTIONS  # noqa: E402

EXAMPLES = 150  # bounded, so that the suite stays quick
NS = "{http://autoscaling.amazonaws.com/doc/2011-01-01/}"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
SCALARS = ["AutoScalingGroupName", "LaunchConfigurationName", "ImageId", "InstanceType", "UserData", "KeyName",
           "MinSize", "MaxSize", "DesiredCapacity", "InstanceId", "ShouldDecrementDesiredCapacity", "ForceDelete",
           "Version"]
LISTS = ["AutoScalingGroupNames", "LaunchConfigurationNames", "InstanceIds", "AvailabilityZones", "SecurityGroups"]
STRUCTS = {"Tags": ["Key", "Value", "ResourceId", "ResourceType", "PropagateAtLaunch"],
           "Filters": ["Name", "Values.member.1", "Values.member.2"]}
KNOWN = ["g", "lc", "local", "clouds", "local:1", "local:0", "nowhere:1", "true", "false", "2011-01-01",
         "auto-scaling-group", "key", "value", "0", "1", "2", "-1", "-0", "+1", "٣", "1e3", "1_0", "",
         "99999999999999999999", "9" * 5000, "i-nothing", "ZWNobyBoaQ==", "%%%", "${HOME}", "/etc/hostname",
         "a]]>b<c&d"]

every_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
awkward_char = st.sampled_from(["\x00", "\x01", "\x08", "\x0b", "\x1f", "\x7f", "\ufffe", "\uffff", "\ud800", "\udfff",
                                "\U0010ffff", "<", "&", "]", ">", "\t", "\n"])
text = st.text(st.one_of(every_char, awkward_char), max_size=30)
# numbers: small ones, and ones past any spec's bound (none that a lax server would make that many nodes of)
number = st.one_of(st.integers(-10, 3), st.integers(min_value=10_001), st.integers(max_value=-11))
value = st.one_of(st.sampled_from(KNOWN), text, number.map(str))
index = st.one_of(st.integers(0, 4).map(str), st.sampled_from(["01", "²", "٣", "9" * 7, "9" * 40, "", "-1", "1.5"]),
                  text)


@st.composite
def field(draw: Any) -> tuple[str, str]:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        key = draw(st.sampled_from(SCALARS))
    elif kind == 1:
        key = f"{draw(st.sampled_from(LISTS))}.member.{draw(index)}"
    elif kind == 2:
        name = draw(st.sampled_from(sorted(STRUCTS)))
        key = f"{name}.member.{draw(index)}.{draw(st.sampled_from(STRUCTS[name]))}"
    elif kind == 3:
        key = draw(st.sampled_from(SCALARS))
        return key, draw(st.sampled_from(["g", "lc", "0", "1", "2"]))
    else:
        key = draw(text)
    return key, draw(value)


forms = st.tuples(st.one_of(st.sampled_from(sorted(ACTIONS)), st.sampled_from(sorted(ACTIONS)), text),
                  st.lists(field(), max_size=12))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("fuzz")
    # a ceiling of 1: whatever group a generated call happens to make stays at most one (local) node
    with serving(folder / "cloudherd-home", folder, interval=3600, max_group_size=1) as running:
        yield running  # its exit ends what local nodes the server made


def encode(fields: list[tuple[str, str]]) -> bytes:
    """A form as a client could send it: a lone surrogate as the bytes it would be (no UTF-8)."""
    return "&".join(f"{quote(k, safe='', errors='surrogatepass')}={quote(v, safe='', errors='surrogatepass')}"
                    for k, v in fields).encode()


def test_every_generated_call_is_answered_in_aws_xml(served: Served) -> None:
    served.cli("user", "add", "fuzz")
    keys = served.aws_keys("fuzz")
    credentials = Credentials(keys["access_key_id"], keys["secret_access_key"])
    known = boto3.client("autoscaling", endpoint_url=served.url + "/autoscaling", region_name="us-east-1",
                         aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"])
    known.create_launch_configuration(LaunchConfigurationName="lc", ImageId="debian-12", InstanceType="small")
    known.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="lc", MinSize=0, MaxSize=0)
    seen: dict[int, int] = {}

    with httpx.Client(base_url=served.url, timeout=60) as http:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(form=forms)
        def answered_in_xml(form: tuple[str, list[tuple[str, str]]]) -> None:
            action, fields = form
            body = encode([("Action", action), *fields])
            request = AWSRequest(method="POST", url=f"{served.url}/autoscaling", data=body,
                                 headers={"Content-Type": FORM})
            SigV4Auth(credentials, "autoscaling", "us-east-1").add_auth(request)
            prepared = request.prepare()
            answer = http.post("/autoscaling", content=prepared.body, headers=dict(prepared.headers.items()))
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            assert answer.status_code != 500 and (answer.status_code == 200 or 400 <= answer.status_code < 600), \
                (answer.status_code, answer.text[:500])
            assert answer.headers["content-type"].startswith("text/xml"), answer.text[:500]
            root = ElementTree.fromstring(answer.content)  # expat: well-formed, and only what XML 1.0 carries
            if answer.status_code == 200:
                assert root.tag == f"{NS}{action}Response", answer.text[:500]
            else:
                assert root.tag == f"{NS}ErrorResponse", answer.text[:500]
                assert root.findtext(f"{NS}Error/{NS}Code") and root.findtext(f"{NS}Error/{NS}Message") is not None
                assert root.findtext(f"{NS}RequestId")

        answered_in_xml()
    assert seen.get(200) and seen.get(400), seen  # both kinds of answer were exercised
    # what the generated calls left behind is still read by boto3
    known.describe_auto_scaling_groups()
    known.describe_launch_configurations()
    known.describe_tags()
    known.describe_auto_scaling_instances()


def _signed(served: Served, keys: dict[str, str], body: bytes) -> httpx.Response:
    request = AWSRequest(method="POST", url=f"{served.url}/autoscaling", data=body, headers={"Content-Type": FORM})
    SigV4Auth(Credentials(keys["access_key_id"], keys["secret_access_key"]), "autoscaling", "us-east-1"
              ).add_auth(request)
    prepared = request.prepare()
    return httpx.post(f"{served.url}/autoscaling", content=prepared.body, headers=dict(prepared.headers.items()),
                      timeout=60)


@pytest.mark.parametrize(("fields", "said"), [
    ([("Action", "DescribeAutoScalingGroups"), ("AutoScalingGroupNames.member.\u00b2", "g")], "member index"),
    ([("Action", "DescribeAutoScalingGroups"), ("AutoScalingGroupNames.member." + "0" * 5000 + "1", "g")],
     "member index"),
    ([("Action", "CreateOrUpdateTags"), ("Tags.member.\u00b2.Key", "k"), ("Tags.member.\u00b2.Value", "v")],
     "member index"),
    ([("Action", "DescribeAutoScalingGroups"), ("AutoScalingGroupNames.member.1", "g\udc80")], "not UTF-8"),
])
def test_what_used_to_be_ignored_is_refused_with_its_reason(served: Served, fields: list[tuple[str, str]],
                                                            said: str) -> None:
    """A mistyped member index or a name that is not UTF-8 was read as nothing: a 200 that did nothing."""
    answer = _signed(served, served.aws_keys(), encode(fields))
    assert answer.status_code == 400, answer.text
    assert said in answer.text and "<Code>ValidationError</Code>" in answer.text
