"""HTTPS for `cloudherd serve`, and answers that never show where the server keeps things.

A real serve with `--tls-self-signed`: the certificate is made once in the data folder, its fingerprint
printed at start, clients that trust it talk HTTPS, the dashboard's cookies are Secure; a spec's files are
named to their sender as the sender named them, never by the server's upload path."""

from __future__ import annotations

import io
import json
import ssl
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import cli, wait_until
from server_harness import Served, serving

from cloudherd.server.tls import plain_warning


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("tls")
    with serving(folder / "home", folder, args=("--tls-self-signed",), interval=1) as running:
        yield running


def _fingerprint(cert: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    raw = x509.load_pem_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in raw)


def test_https_with_a_certificate_made_once_and_its_fingerprint_printed(served: Served) -> None:
    cert = served.home / "server" / "tls" / "cert.pem"
    key = served.home / "server" / "tls" / "key.pem"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert f"SHA-256 {_fingerprint(cert)}" in served.log_text()
    with httpx.Client(base_url=served.url, verify=ssl.create_default_context(cafile=str(cert))) as client:
        assert client.get("/healthz").json()["status"] == "ok"
    with pytest.raises(httpx.ConnectError):  # a client that does not trust it refuses to talk
        httpx.get(f"{served.url}/healthz")
    with pytest.raises(httpx.HTTPError):  # and plain HTTP on the port gets no answer
        httpx.get(f"http://127.0.0.1:{served.port}/healthz")


def test_the_same_certificate_after_a_restart(served: Served) -> None:
    cert = served.home / "server" / "tls" / "cert.pem"
    before = _fingerprint(cert)
    served.stop()
    served.start()
    assert _fingerprint(cert) == before
    assert f"SHA-256 {before}" in served.log_text()


def test_the_dashboards_cookies_are_secure_over_https(served: Served) -> None:
    import re

    with httpx.Client(base_url=served.url, verify=served._verify()) as browser:
        page = browser.get("/ui")
        assert "secure" in page.headers["set-cookie"].lower()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        answer = browser.post("/ui/login", data={"token": served.token(), "csrf": csrf.group(1)})
        assert answer.status_code == 303
        session = [c for c in answer.headers.get_list("set-cookie") if c.startswith("cloudherd_session=")]
        assert session and "secure" in session[0].lower() and "httponly" in session[0].lower()


def test_answers_name_a_specs_files_as_sent_never_by_server_path(served: Served) -> None:
    api = served.client(served.token())
    spec = "name: pathless\ngroups:\n  web:\n    count: 1\n    scripts: [scripts/show.sh]\n"
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as archive:
        for name, data in (("cloudherd.yml", spec), ("scripts/show.sh", "echo shown\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            archive.addfile(info, io.BytesIO(data.encode()))
    body, kind = blob.getvalue(), {"Content-Type": "application/gzip"}
    plan = api.post("/v1/plan", content=body, headers=kind)
    created = api.post("/v1/infrastructures", content=body, headers=kind)
    assert created.status_code == 201, created.text
    infra_id = created.json()["id"]
    wait_until(lambda: any(a["exit_code"] == 0 for a in api.get(f"/v1/infrastructures/{infra_id}/logs").json()),
               timeout=120, what="the script to run")
    as_json = {"Accept": "application/json"}
    answers = [plan, created] + [api.get(f"/v1/infrastructures/{infra_id}{part}", headers=as_json)
                                 for part in ("", "/logs", "/events", "/nodes", "/revisions")]
    with api.stream("GET", f"/v1/infrastructures/{infra_id}/events", params={"follow": "false"},
                    headers={"Accept": "text/event-stream"}) as stream:
        streamed = "\n".join(stream.iter_lines())
    texts = [a.text for a in answers] + [streamed]
    for text in texts:
        assert "uploads" not in text and str(served.home) not in text, text
    assert "scripts/show.sh" in json.dumps(plan.json())
    assert created.json()["spec"] == "cloudherd.yml"


def test_bad_tls_files_are_one_clear_line(tmp_path: Path) -> None:
    missing = cli("serve", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "nope.key"),
                  env={"CLOUDHERD_HOME": str(tmp_path / "home")})
    assert missing.returncode != 0 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    junk = cli("serve", "--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", str(tmp_path / "junk.pem"),
               env={"CLOUDHERD_HOME": str(tmp_path / "home")})
    assert junk.returncode != 0 and "not a PEM certificate" in junk.stderr and "Traceback" not in junk.stderr
    half = cli("serve", "--tls-cert", str(tmp_path / "junk.pem"), env={"CLOUDHERD_HOME": str(tmp_path / "home")})
    assert half.returncode != 0 and "go together" in half.stderr


def test_a_server_on_the_network_without_tls_says_so() -> None:
    assert plain_warning("0.0.0.0", None) is not None and "without TLS" in str(plain_warning("0.0.0.0", None))
    assert plain_warning("192.0.2.7", None) is not None
    for loopback in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert plain_warning(loopback, None) is None
