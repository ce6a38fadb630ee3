"""SigV4 verification (cloudherd.server.sigv4) against botocore's real signers and boto3's real client.

The unit tests sign at a fixed moment and pass that moment to ``verify``, so nothing depends on the wall
clock; the end-to-end test signs and verifies "now" within one request, far inside the 15-minute window.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest.mock import patch
from urllib.parse import parse_qsl, urlsplit

import pytest

botocore = pytest.importorskip("botocore")
boto3 = pytest.importorskip("boto3")

from botocore.auth import S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from cloudherd.server.sigv4 import SignatureError, verify  # noqa: E402

KEY = "AKIACLOUDHERDTEST001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = {KEY: SECRET}
WHEN = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
BODY = b"Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1=g"
FIELDS = dict(parse_qsl(BODY.decode()))  # the same form as boto3's query serializer hands the presigner
FORM = "application/x-www-form-urlencoded; charset=utf-8"
BASE = "http://127.0.0.1:8443"
HEX64 = re.compile(r"[0-9a-f]{64}")


class Signed:
    """A request as it reaches the server: method, raw path and query, headers (with Host) and body."""

    def __init__(self, request: Any) -> None:
        parts = urlsplit(request.url)
        self.method: str = request.method
        self.path: str = parts.path
        self.query: str = parts.query
        self.headers: dict[str, str] = {"Host": parts.netloc, **dict(request.headers.items())}
        body = request.body or b""
        self.body: bytes = body.encode() if isinstance(body, str) else body

    def verify(self, *, now: datetime = WHEN, secrets: dict[str, str] | None = None) -> tuple[str, str]:
        table = SECRETS if secrets is None else secrets
        return verify(self.method, self.path, self.query, self.headers, self.body, table.get, now=now)


def sign(url: str = f"{BASE}/autoscaling", body: bytes | dict[str, str] = BODY, *, key: str = KEY, secret: str = SECRET,
         region: str = "us-east-1", service: str = "autoscaling", when: datetime = WHEN,
         headers: dict[str, str] | None = None, signer: type[SigV4Auth] = SigV4Auth) -> Signed:
    """Signs like boto3's autoscaling client does (form-encoded POST), at a chosen moment."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": FORM, **(headers or {})})
    with patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        signer(Credentials(key, secret), service, region).add_auth(request)
    return Signed(request.prepare())


def refused(signed: Signed, code: str, *, now: datetime = WHEN) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        signed.verify(now=now)
    error = caught.value
    assert error.code == code, str(error)
    assert error.status == (400 if code == "IncompleteSignature" else 403)
    assert SECRET not in str(error)
    assert not HEX64.search(str(error)), "no signature (or hash) may appear in a message"
    return error


# -- the Authorization header ----------------------------------------------------------------------------

@pytest.mark.parametrize("url", [f"{BASE}/autoscaling", f"{BASE}/", "http://localhost:9/", BASE + "/x%20y//./z/",
                                 f"{BASE}/autoscaling?Extra=a%20b&A=%2F&flag"])
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3"])
def test_correct_signature_gives_key_and_region(url: str, region: str) -> None:
    assert sign(url, region=region).verify() == (KEY, region)


def test_headers_are_case_insensitive_and_unsigned_extras_are_ignored() -> None:
    signed = sign()
    signed.headers = {name.upper(): value for name, value in signed.headers.items()}
    signed.headers["X-Forwarded-For"] = "10.0.0.1"
    assert signed.verify() == (KEY, "us-east-1")


def test_date_header_instead_of_x_amz_date() -> None:
    signed = sign(headers={"Date": "Thu, 01 Jan 1970 00:00:00 GMT"})  # botocore rewrites it to the signing time
    assert "X-Amz-Date" not in signed.headers
    assert signed.verify() == (KEY, "us-east-1")


def test_signed_content_sha256_header() -> None:
    signed = sign(headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    assert signed.verify() == (KEY, "us-east-1")
    signed.body = BODY.replace(b"member.1=g", b"member.1=h")
    assert "x-amz-content-sha256" in refused(signed, "SignatureDoesNotMatch").message


def test_unsigned_payload_is_refused_on_the_header_form() -> None:
    signed = sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    refused(signed, "SignatureDoesNotMatch")


def test_tampered_body() -> None:
    signed = sign()
    signed.body = BODY.replace(b"member.1=g", b"member.1=other")
    error = refused(signed, "SignatureDoesNotMatch")
    assert error.message.startswith("The request signature we calculated does not match the signature you provided.")


@pytest.mark.parametrize(("name", "value"), [("Content-Type", "text/plain"), ("Host", "127.0.0.1:8444"),
                                             ("X-Amz-Date", "20261201T120001Z")])
def test_tampered_signed_header(name: str, value: str) -> None:
    signed = sign()
    signed.headers[name] = value
    refused(signed, "SignatureDoesNotMatch")


def test_tampered_path_and_query() -> None:
    signed = sign(f"{BASE}/autoscaling")
    signed.path = "/"
    refused(signed, "SignatureDoesNotMatch")
    signed = sign(f"{BASE}/?A=1")
    signed.query = "A=2"
    refused(signed, "SignatureDoesNotMatch")


def test_wrong_secret() -> None:
    error = refused(sign(secret="not-the-secret"), "SignatureDoesNotMatch")
    assert "Secret Access Key" in error.message


def test_unknown_key() -> None:
    error = refused(sign(key="AKIANOBODYKNOWSTHIS1"), "InvalidClientTokenId")
    assert error.message == "The security token included in the request is invalid."


def test_missing_authorization() -> None:
    signed = sign()
    del signed.headers["Authorization"]
    refused(signed, "MissingAuthenticationToken")


def test_missing_date_header() -> None:
    signed = sign()
    del signed.headers["X-Amz-Date"]
    assert "X-Amz-Date" in refused(signed, "IncompleteSignature").message


def test_missing_signed_header() -> None:
    signed = sign()
    del signed.headers["Content-Type"]
    assert "content-type" in refused(signed, "SignatureDoesNotMatch").message


@pytest.mark.parametrize("part", ["Credential", "SignedHeaders", "Signature"])
def test_malformed_authorization_names_what_is_missing(part: str) -> None:
    signed = sign()
    fields = signed.headers["Authorization"].removeprefix("AWS4-HMAC-SHA256 ").split(", ")
    kept = [field for field in fields if not field.startswith(part + "=")]
    signed.headers["Authorization"] = "AWS4-HMAC-SHA256 " + ", ".join(kept)
    assert f"'{part}'" in refused(signed, "IncompleteSignature").message


def test_other_authorization_schemes_are_incomplete() -> None:
    signed = sign()
    signed.headers["Authorization"] = "Bearer abc"
    refused(signed, "IncompleteSignature")


def test_stale_date_is_signature_expired() -> None:
    """AWS's Query services answer a stale date with SignatureDoesNotMatch "Signature expired: …"."""
    error = refused(sign(when=WHEN - timedelta(minutes=20)), "SignatureDoesNotMatch")
    assert error.message == ("Signature expired: 20261201T114000Z is now earlier than 20261201T114500Z "
                             "(20261201T120000Z - 15 min.)")
    assert sign(when=WHEN - timedelta(minutes=14)).verify() == (KEY, "us-east-1")


def test_future_date_is_not_yet_current() -> None:
    error = refused(sign(when=WHEN + timedelta(minutes=20)), "SignatureDoesNotMatch")
    assert error.message.startswith("Signature not yet current: 20261201T122000Z is still later than")


@pytest.mark.parametrize(("region", "service"), [("0", "127"), ("nimbus", "ec2"), ("us-east-1", "autoscaling")])
def test_the_scope_the_client_signed_is_accepted(region: str, service: str) -> None:
    """boto 2 derives the scope from the host (127.0.0.1: region "0", service "127"); the secret proves it."""
    assert sign(region=region, service=service).verify() == (KEY, region)


def test_a_scope_other_than_the_one_signed_is_refused() -> None:
    signed = sign(service="ec2")
    signed.headers["Authorization"] = signed.headers["Authorization"].replace("/ec2/", "/autoscaling/")
    refused(signed, "SignatureDoesNotMatch")
    signed = sign(service="ec2")
    signed.headers["Authorization"] = signed.headers["Authorization"].replace("/ec2/", "/e c2/")
    assert "valid service" in refused(signed, "SignatureDoesNotMatch").message


# -- presigned query strings ---------------------------------------------------------------------------------

def presign(url: str = f"{BASE}/autoscaling", **kwargs: Any) -> Signed:
    """botocore's non-S3 presigner: it moves the form body into the query and hashes the now empty body."""

    class Presigner(SigV4QueryAuth):
        def __init__(self, credentials: Credentials, service: str, region: str) -> None:
            super().__init__(credentials, service, region, expires=300)

    return sign(url, FIELDS, signer=Presigner, **kwargs)


def test_presigned_url() -> None:
    signed = presign()
    assert "X-Amz-Signature=" in signed.query
    assert "Action=DescribeAutoScalingGroups" in signed.query
    assert signed.body == b""
    assert "Authorization" not in signed.headers
    assert signed.verify() == (KEY, "us-east-1")
    assert signed.verify(now=WHEN + timedelta(seconds=299)) == (KEY, "us-east-1")


def test_presigned_unsigned_payload() -> None:
    class Presigner(S3SigV4QueryAuth):  # hashes the payload as UNSIGNED-PAYLOAD
        def __init__(self, credentials: Credentials, service: str, region: str) -> None:
            super().__init__(credentials, service, region, expires=300)

    signed = sign(f"{BASE}/autoscaling", FIELDS, signer=Presigner)
    assert signed.verify() == (KEY, "us-east-1")
    signed.body = b"Action=DeleteAutoScalingGroup&AutoScalingGroupName=g"  # an unsigned body is never believed
    refused(signed, "SignatureDoesNotMatch")


def test_presigned_tampered_query() -> None:
    signed = presign()
    signed.query = signed.query.replace("member.1=g", "member.1=h")
    refused(signed, "SignatureDoesNotMatch")


def test_presigned_wrong_secret_and_unknown_key() -> None:
    refused(presign(secret="nope"), "SignatureDoesNotMatch")
    refused(presign(key="AKIANOBODYKNOWSTHIS1"), "InvalidClientTokenId")


def test_presigned_after_its_expiry() -> None:
    refused(presign(), "RequestExpired", now=WHEN + timedelta(seconds=301))


def test_presigned_missing_parameter() -> None:
    signed = presign()
    signed.query = "&".join(p for p in signed.query.split("&") if not p.startswith("X-Amz-Credential="))
    assert "X-Amz-Credential" in refused(signed, "IncompleteSignature").message


def test_both_forms_at_once_is_incomplete() -> None:
    signed = presign()
    signed.headers["Authorization"] = sign().headers["Authorization"]
    refused(signed, "IncompleteSignature")


# -- boto3's real client against a tiny server ---------------------------------------------------------------------

OK_XML = ('<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
          "<DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult>"
          "<ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>")


class Handler(BaseHTTPRequestHandler):
    """Verifies every POST; answers an empty DescribeAutoScalingGroups or AWS's error XML."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        try:
            verify(self.command, path, query, self.headers, body, SECRETS.get)  # type: ignore[arg-type]
        except SignatureError as error:
            self.answer(error.status, "<ErrorResponse><Error><Type>Sender</Type>"
                                      f"<Code>{error.code}</Code><Message>{error.message}</Message></Error>"
                                      "<RequestId>r</RequestId></ErrorResponse>")
        else:
            self.answer(200, OK_XML)

    def answer(self, status: int, xml: str) -> None:
        data = xml.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows failures, not access logs."""


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_AUTO_SCALING",
                 "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/autoscaling"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def client(endpoint: str, key: str, secret: str) -> Any:
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="eu-west-1")
    return session.client("autoscaling", endpoint_url=endpoint,
                          config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def test_boto3_autoscaling_client_end_to_end(endpoint: str) -> None:
    assert client(endpoint, KEY, SECRET).describe_auto_scaling_groups(AutoScalingGroupNames=["g"])[
        "AutoScalingGroups"] == []
    for key, secret, code in [(KEY, "wrong-secret", "SignatureDoesNotMatch"),
                              ("AKIANOBODYKNOWSTHIS1", SECRET, "InvalidClientTokenId")]:
        with pytest.raises(ClientError) as caught:
            client(endpoint, key, secret).describe_auto_scaling_groups()
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
