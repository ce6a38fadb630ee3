"""Phantom's users' client, boto 2.49, against a running `cloudherd serve`: connected the way Phantom's
published sandbox scripts connect (a RegionInfo named after the site, the endpoint's host and port, no
certificate check), over http and https.  boto 2 signs with SigV4 scoped to what it derives from the host
(for 127.0.0.1: region "0", service "127") and sends its reads as GET."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from server_harness import Served, write_config

with warnings.catch_warnings():  # boto 2 predates Python 3.11's import machinery and says so
    warnings.simplefilter("ignore")
    boto_autoscale = pytest.importorskip("boto.ec2.autoscale")
    from boto.exception import BotoServerError
    from boto.regioninfo import RegionInfo


@pytest.fixture(params=["http", "https"])
def served(request: pytest.FixtureRequest, home: Path, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    args = ("--tls-self-signed",) if request.param == "https" else ()
    server = Served(home, write_config(tmp_path, {"hotel": "local", "sierra": "local"}, interval=1),
                    args=args).start()
    if args:
        # boto 2's validate_certs=False no longer turns verification off on Python 3 (its connection takes the
        # default context): a user trusts the server's certificate the standard way, by the environment
        monkeypatch.setenv("SSL_CERT_FILE", str(home / "server" / "tls" / "cert.pem"))
    try:
        yield server
    finally:
        server.stop()


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
