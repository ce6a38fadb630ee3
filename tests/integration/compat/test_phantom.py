"""Phantom's users' client, boto 2.49, against a running `cloudherd serve`: connected the way Phantom's
published sandbox scripts connect (a RegionInfo named after the site, the endpoint's host and port, no
certificate check), over http and https.  boto 2 signs with SigV4 scoped to what it derives from the host
(for 127.0.0.1: region "0", service "127") and sends its reads as GET."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from helpers import wait_until
from server_harness import Served, serving, write_config

with warnings.catch_warnings():  # boto 2 predates Python 3.11's import machinery and says so
    warnings.simplefilter("ignore")
    boto_autoscale = pytest.importorskip("boto.ec2.autoscale")
    from boto.exception import BotoServerError
    from boto.regioninfo import RegionInfo


@pytest.fixture(params=["http", "https"])
def served(request: pytest.FixtureRequest, home: Path, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    args = ("--tls-self-signed",) if request.param == "https" else ()
    with serving(home, tmp_path, {"hotel": "local", "sierra": "local"}, args=args, interval=1) as running:
        if args:
            # boto 2's validate_certs=False no longer turns verification off on Python 3 (its connection takes the
            # default context): a user trusts the server's certificate the standard way, by the environment
            monkeypatch.setenv("SSL_CERT_FILE", str(home / "server" / "tls" / "cert.pem"))
        yield running


def connect(served: Served, keys: dict[str, str], secret: str | None = None) -> Any:
    """An AutoScaleConnection as Phantom's scripts make one from PHANTOM_URL and the EC2_* keys."""
    url = urlparse(served.url)
    region = RegionInfo(name="nimbus", endpoint=url.hostname)
    con = boto_autoscale.AutoScaleConnection(
        aws_access_key_id=keys["access_key_id"], aws_secret_access_key=secret or keys["secret_access_key"],
        is_secure=url.scheme == "https", port=url.port, debug=0, region=region, validate_certs=False)
    con.host = url.hostname
    return con


def test_boto2_lists_makes_and_deletes_launch_configurations(served: Served) -> None:
    con = connect(served, served.aws_keys())
    assert con.get_all_launch_configurations() == []
    for site in ("hotel", "sierra"):
        lc = boto_autoscale.launchconfig.LaunchConfiguration(
            con, name=f"testlc1@{site}", image_id="hello-cloud", key_name="phantomkey", security_groups=["default"],
            instance_type="m1.small")
        con.create_launch_configuration(lc)
    assert [lc.name for lc in con.get_all_launch_configurations()] == ["testlc1@hotel", "testlc1@sierra"]
    assert con.get_all_groups() == []
    con.delete_launch_configuration("testlc1@hotel")
    assert [lc.name for lc in con.get_all_launch_configurations()] == ["testlc1@sierra"]


def test_a_wrong_secret_is_refused_in_aws_terms(served: Served) -> None:
    con = connect(served, served.aws_keys(), secret="x" * 40)
    with pytest.raises(BotoServerError) as caught:
        con.get_all_launch_configurations()
    assert caught.value.status == 403 and caught.value.error_code == "SignatureDoesNotMatch"


def test_every_answer_under_the_endpoint_is_aws_xml(served: Served) -> None:
    verify = served._verify()
    for method, path, status, code in (("PUT", "/autoscaling", 405, "MethodNotAllowed"),
                                       ("DELETE", "/", 405, "MethodNotAllowed"),
                                       ("GET", "/autoscaling/nothing/here", 404, "InvalidAction"),
                                       ("GET", "/?Action=DescribeAutoScalingGroups", 400, None),
                                       ("POST", "/autoscaling", 400, None)):
        answer = httpx.request(method, served.url + path, verify=verify, timeout=10)
        assert answer.status_code in (status, 403), (method, path, answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith("text/xml"), (method, path, answer.text)
        assert "<ErrorResponse" in answer.text and (code is None or f"<Code>{code}</Code>" in answer.text)
    page = httpx.get(served.url + "/", headers={"Accept": "text/html"}, verify=verify, timeout=10)
    assert page.status_code == 303 and page.headers["location"] == "/ui/"


@pytest.fixture
def site(home: Path, tmp_path: Path) -> Iterator[Served]:
    """Two clouds named like Phantom's FutureGrid sites, over http."""
    server = Served(home, write_config(tmp_path, {"hotel": "local", "sierra": "local"}, interval=1)).start()
    try:
        yield server
    finally:
        server.stop()


def phantom_domain(con: Any, name: str, lc_name: str, n_preserve: int, *clouds: str) -> None:
    """What Phantom's asg_create.py sends: min = max = n, Phantom's three tags, a zone that is no site."""
    tags = [boto_autoscale.Tag(connection=con, key=key, value=value, resource_id=name)
            for key, value in (("PHANTOM_DEFINITION", "error_overflow_n_preserving"), ("clouds", ",".join(clouds)),
                               ("minimum_vms", n_preserve))]
    [lc] = con.get_all_launch_configurations(names=[lc_name])
    group = boto_autoscale.group.AutoScalingGroup(
        connection=con, group_name=name, availability_zones=["us-east-1"], min_size=n_preserve, max_size=n_preserve,
        launch_config=lc, tags=tags)
    con.create_auto_scaling_group(group)


def healthy_zones(con: Any, name: str, count: int) -> list[str] | None:
    [group] = con.get_all_groups(names=[name])
    zones = sorted(i.availability_zone for i in group.instances if i.health_status == "Healthy"
                   and i.lifecycle_state == "InService")
    return zones if len(zones) == count == len(group.instances) else None


def test_the_phantom_session_of_its_documentation(site: Served) -> None:
    """The sample session of Phantom's 'Scripting with the REST API': two sites' launch configurations, a
    domain of 3 across hotel:1 sierra:2, listed; its n-preserving value altered; a tag edit that gives the
    domain more room; deleted (no ForceDelete) with its launch configurations."""
    con = connect(site, site.aws_keys())
    for cloud in ("hotel", "sierra"):
        con.create_launch_configuration(boto_autoscale.launchconfig.LaunchConfiguration(
            con, name=f"testlc1@{cloud}", image_id="hello-cloud", key_name="phantomkey", security_groups=["default"],
            instance_type="m1.small"))
    assert [lc.name for lc in con.get_all_launch_configurations()] == ["testlc1@hotel", "testlc1@sierra"]
    phantom_domain(con, "testDomain1", "testlc1@hotel", 3, "hotel:1", "sierra:2")
    [group] = con.get_all_groups()
    assert (group.name, group.launch_config_name, group.desired_capacity) == ("testDomain1", "testlc1", 3)
    assert wait_until(lambda: healthy_zones(con, "testDomain1", 3), timeout=180,
                      what="3 healthy instances") == ["hotel", "sierra", "sierra"]
    group.set_capacity(2)  # asg_alter.py: the n-preserving value down
    [group] = con.get_all_groups(names=["testDomain1"])
    assert (group.min_size, group.max_size, group.desired_capacity) == (2, 2, 2)
    wait_until(lambda: healthy_zones(con, "testDomain1", 2), timeout=180, what="the domain at 2")
    with pytest.raises(BotoServerError) as caught:  # past the sites' caps: Phantom's error_overflow
        group.set_capacity(4)
    assert caught.value.error_code == "ValidationError" and "caps allow (3: hotel:1, sierra:2)" in caught.value.message
    con.create_or_update_tags([boto_autoscale.Tag(connection=con, key="clouds", value="hotel:2,sierra:2",
                                                  resource_id="testDomain1")])
    group.set_capacity(4)
    assert wait_until(lambda: healthy_zones(con, "testDomain1", 4), timeout=180,
                      what="the domain at 4 across the new caps") == ["hotel", "hotel", "sierra", "sierra"]
    minimum = [t.value for t in con.get_all_tags(filters={"auto-scaling-group": ["testDomain1"]})
               if t.key == "minimum_vms"]
    assert minimum == ["4"]
    [group] = con.get_all_groups(names=["testDomain1"])
    group.delete()  # asg_delete.py: no ForceDelete, the domain still running
    wait_until(lambda: not con.get_all_groups(), timeout=180, what="the domain gone")
    for cloud in ("hotel", "sierra"):
        con.delete_launch_configuration(f"testlc1@{cloud}")
    assert con.get_all_launch_configurations() == []


def test_a_clouds_tag_edit_moves_a_running_domain_one_machine_at_a_time(site: Served) -> None:
    """How a Phantom user moves a domain: CreateOrUpdateTags on its clouds.  hotel:1,sierra:2 → hotel:2,sierra:2
    fills hotel first, so one machine moves from sierra to hotel, made there before the pass after retires
    nothing more; the domain never drops by more than that one."""
    con = connect(site, site.aws_keys())
    for cloud in ("hotel", "sierra"):
        con.create_launch_configuration(boto_autoscale.launchconfig.LaunchConfiguration(
            con, name=f"lc@{cloud}", image_id="hello-cloud", instance_type="m1.small"))
    phantom_domain(con, "moving", "lc@hotel", 3, "hotel:1", "sierra:2")
    assert wait_until(lambda: healthy_zones(con, "moving", 3), timeout=180,
                      what="3 healthy instances") == ["hotel", "sierra", "sierra"]
    con.create_or_update_tags([boto_autoscale.Tag(connection=con, key="clouds", value="hotel:2,sierra:2",
                                                  resource_id="moving")])
    assert wait_until(lambda: healthy_zones(con, "moving", 3) == ["hotel", "hotel", "sierra"] or None,
                      timeout=180, what="the domain moved to the new caps")
    # the operator's view of why it moved: the domain's event log
    [infra] = [i for i in json.loads(site.cli("ls", "--json").stdout) if i["name"].startswith("asg-moving-")]
    log = [json.loads(line) for line in site.cli("events", infra["id"], "--json").stdout.splitlines()]
    moves = [e["message"] for e in log if e["kind"] == "placement"]
    assert len(moves) == 1 and "from sierra to hotel" in moves[0], log
    [group] = con.get_all_groups(names=["moving"])
    group.delete()
    wait_until(lambda: not con.get_all_groups(), timeout=180, what="the domain gone")


def test_a_definition_this_server_does_not_run_is_refused(site: Served) -> None:
    """sensor_asg_create.py's domain scales on a sensor's metric: kept at a fixed size it would silently not
    scale, so it is refused, naming what runs."""
    con = connect(site, site.aws_keys())
    con.create_launch_configuration(boto_autoscale.launchconfig.LaunchConfiguration(
        con, name="lc@hotel", image_id="x", instance_type="m1.small"))
    [lc] = con.get_all_launch_configurations()
    tags = [boto_autoscale.Tag(connection=con, key=key, value=value, resource_id="sensed")
            for key, value in (("PHANTOM_DEFINITION", "sensor_engine"), ("clouds", "hotel:2"), ("metric", "load"))]
    with pytest.raises(BotoServerError) as caught:
        con.create_auto_scaling_group(boto_autoscale.group.AutoScalingGroup(
            connection=con, group_name="sensed", availability_zones=["us-east-1"], min_size=1, max_size=2,
            launch_config=lc, tags=tags))
    assert caught.value.error_code == "ValidationError"
    assert "sensor_engine (scaling on a sensor's metric) is not run by this server" in caught.value.message
    assert con.get_all_groups() == []


def test_a_group_without_phantom_s_tag_follows_aws(site: Served) -> None:
    con = connect(site, site.aws_keys())
    con.create_launch_configuration(boto_autoscale.launchconfig.LaunchConfiguration(
        con, name="plain@hotel", image_id="x", instance_type="m1.small"))
    [lc] = con.get_all_launch_configurations()
    con.create_auto_scaling_group(boto_autoscale.group.AutoScalingGroup(
        connection=con, group_name="plain", availability_zones=["hotel"], min_size=1, max_size=1, launch_config=lc))
    [group] = con.get_all_groups()
    assert group.launch_config_name == "plain@hotel"
    with pytest.raises(BotoServerError) as caught:
        group.set_capacity(2)
    assert caught.value.error_code == "ValidationError" and "above max" in caught.value.message
    with pytest.raises(BotoServerError) as caught:
        group.delete()
    assert caught.value.error_code == "ResourceInUse"
    group.delete(force_delete=True)
