"""`cloudherd serve` as a user meets it: a real server process, real local nodes, httpx as the client.

Auth on every route, the native /v1 routes with their status codes, exec as a job over warm connections,
events as Server-Sent Events with Last-Event-ID, Occopus' routes, and a restart that keeps maintaining.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import wait_until
from server_harness import SPEC, Served, create, ready_nodes, serving, write_config


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, interval=1) as running:
        yield running


def test_every_route_but_healthz_needs_a_valid_token(served: Served) -> None:
    assert httpx.get(f"{served.url}/healthz").json()["status"] == "ok"
    anonymous = served.client(None)
    for method, path in (("GET", "/v1/infrastructures"), ("POST", "/v1/infrastructures"), ("GET", "/infrastructures/"),
                         ("POST", "/infrastructures/"), ("GET", "/v1/jobs/x"), ("DELETE", "/v1/infrastructures/x")):
        answer = anonymous.request(method, path)
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert served.client("chd_nothing_here").get("/v1/infrastructures").status_code == 401
    assert served.client("not-even-the-shape").get("/v1/infrastructures").status_code == 401
    token = served.token()
    assert served.client(token).get("/v1/infrastructures").json() == []
    token_id = json.loads(served.cli("token", "ls", "--json").stdout)[0]["id"]
    served.cli("token", "revoke", token_id)
    assert served.client(token).get("/v1/infrastructures").status_code == 401
    listed = served.cli("token", "ls").stdout
    assert token.split("_", 2)[2] not in listed  # the secret is never shown again


def test_tokens_are_stored_hashed_and_aws_secrets_sealed(served: Served) -> None:
    token = served.token()
    keys = served.aws_keys()
    raw = b"".join(p.read_bytes() for p in served.home.glob("state.db*"))
    assert token.encode() not in raw and token.split("_", 2)[2].encode() not in raw
    assert keys["secret_access_key"].encode() not in raw
    assert keys["access_key_id"].encode() in raw  # the key id is public, as AWS's are


def test_openapi_and_docs_are_served(served: Served) -> None:
    schema = httpx.get(f"{served.url}/openapi.json").json()
    assert "/v1/infrastructures/{ref}/events" in schema["paths"]
    assert "/infrastructures/{infraid}/scaleto/{nodename}/{count}" in schema["paths"]
    assert "Infrastructure" in schema["components"]["schemas"]
    assert httpx.get(f"{served.url}/docs").status_code == 200


def test_native_routes_from_create_to_delete(served: Served) -> None:
    api = served.client(served.token())
    infra_id = create(api, "rest-one")
    # the name is taken now; a bad spec is a 400 with its one line
    again = api.post("/v1/infrastructures", content=SPEC.format(name="rest-one"))
    assert again.status_code == 409 and "rest-one" in again.json()["detail"]
    bad = api.post("/v1/infrastructures", content="name: Bad Name!\ngroups: {web: {count: 1}}\n")
    assert bad.status_code == 400, bad.text
    assert bad.json()["detail"].startswith("cloudherd.yml:1: name:") and "uploads" not in bad.json()["detail"]
    assert api.post("/v1/infrastructures", content=b"").status_code == 400
    uploads = served.home / "server" / "uploads"
    assert len(list(uploads.iterdir())) == 1  # refused specs leave nothing behind; the one made keeps its folder
    assert api.get("/v1/infrastructures/nothing-like-it").status_code == 404
    got = api.get(f"/v1/infrastructures/{infra_id}").json()
    assert got["name"] == "rest-one" and got["attached"] and [g["name"] for g in got["groups"]] == ["web"]
    plan = api.post("/v1/plan", content=SPEC.format(name="rest-one").replace("count: 2", "count: 3")).json()
    assert plan["infrastructure"] == infra_id and plan["groups"][0]["create"] == 1
    # scale through the manager
    scaled = api.post(f"/v1/infrastructures/{infra_id}/groups/web/scale", json={"change": "+1"})
    assert scaled.status_code == 202 and scaled.json()["target"] == 3
    wait_until(lambda: len(ready_nodes(api, infra_id)) == 3, timeout=120, what="the third node")
    assert api.post(f"/v1/infrastructures/{infra_id}/groups/web/scale", json={"change": "lots"}).status_code == 400
    assert api.post(f"/v1/infrastructures/{infra_id}/groups/nope/scale", json={"change": "+1"}).status_code == 404
    assert api.post(f"/v1/infrastructures/{infra_id}/groups/web/scale", json={}).status_code == 422
    # exec as a job
    job = api.post(f"/v1/infrastructures/{infra_id}/exec", json={"command": "cat greeting.txt"})
    assert job.status_code == 202
    done = wait_until(lambda: (j := api.get(f"/v1/jobs/{job.json()['id']}").json())["state"] != "running" and j,
                      timeout=60, what="the exec job")
    assert done["state"] == "done" and len(done["results"]) == 3
    assert all(r["stdout"].startswith("hello from rest-one-web-") for r in done["results"])
    logs = api.get(f"/v1/infrastructures/{infra_id}/logs").json()
    assert any(a["kind"] == "exec" and a["name"] == "cat greeting.txt" for a in logs)
    # delete: 202, then destroyed
    gone = api.delete(f"/v1/infrastructures/{infra_id}")
    assert gone.status_code == 202
    assert api.delete(f"/v1/infrastructures/{infra_id}").status_code == 409  # going already, or gone
    wait_until(lambda: api.get(f"/v1/jobs/{gone.json()['id']}").json()["state"] == "done", timeout=120,
               what="the teardown")
    assert api.get(f"/v1/infrastructures/{infra_id}").json()["state"] == "destroyed"
    assert api.delete(f"/v1/infrastructures/{infra_id}").status_code == 409


def test_another_users_infrastructure_answers_404(served: Served) -> None:
    mine = served.client(served.token())
    served.cli("user", "add", "mallory")
    theirs = served.client(served.token("mallory"))
    answer = mine.post("/v1/infrastructures", content=SPEC.format(name="private-one").replace("count: 2", "count: 0")
                       .replace("min: 1", "min: 0"))
    assert answer.status_code == 201, answer.text
    infra_id = answer.json()["id"]
    assert theirs.get("/v1/infrastructures").json() == []
    for method, path in (("GET", f"/v1/infrastructures/{infra_id}"), ("DELETE", f"/v1/infrastructures/{infra_id}"),
                         ("GET", f"/v1/infrastructures/{infra_id}/events"), ("GET", f"/infrastructures/{infra_id}"),
                         ("POST", f"/infrastructures/{infra_id}/scaleto/web/3")):
        assert theirs.request(method, path).status_code == 404, (method, path)
    assert mine.get(f"/v1/infrastructures/{infra_id}").status_code == 200


def test_a_bundle_carries_the_scripts_and_events_resume_from_last_event_id(served: Served) -> None:
    api = served.client(served.token())
    spec = "name: bundled\ngroups:\n  app:\n    count: 1\n    scripts: [scripts/]\n"
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as archive:
        for name, data in (("cloudherd.yml", spec), ("scripts/10-say.sh", "echo bundled > said.txt\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            archive.addfile(info, io.BytesIO(data.encode()))
    answer = api.post("/v1/infrastructures", content=blob.getvalue(), headers={"Content-Type": "application/gzip"})
    assert answer.status_code == 201, answer.text
    infra_id = answer.json()["id"]
    wait_until(lambda: len(ready_nodes(api, infra_id)) == 1, timeout=120, what="the bundled node")
    logs = api.get(f"/v1/infrastructures/{infra_id}/logs").json()
    assert any(a["name"].endswith("10-say.sh") and a["exit_code"] == 0 for a in logs), logs
    def listed_after(middle: int) -> list[int]:
        events = api.get(f"/v1/infrastructures/{infra_id}/events", headers={"Accept": "application/json"}).json()
        return [e["id"] for e in events if e["id"] > middle]

    # The manager keeps writing events while the test reads, so the stream is held between a listing taken
    # before it and one taken after it: it starts with the first and is a start of the second.
    middle = listed_after(0)[0]
    before = listed_after(middle)
    assert before
    with api.stream("GET", f"/v1/infrastructures/{infra_id}/events", params={"follow": "false"},
                    headers={"Last-Event-ID": str(middle), "Accept": "text/event-stream"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        ids = [int(line[4:]) for line in stream.iter_lines() if line.startswith("id: ")]
    after = listed_after(middle)
    assert ids[:len(before)] == before and after[:len(ids)] == ids, (before, ids, after)


def test_a_hostile_bundle_is_refused_before_anything_is_written(served: Served) -> None:
    api = served.client(served.token())
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as archive:
        info = tarfile.TarInfo("../../escape.sh")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"x\n"))
    answer = api.post("/v1/infrastructures", content=blob.getvalue(), headers={"Content-Type": "application/gzip"})
    assert answer.status_code == 400 and "outside" in answer.json()["detail"]
    assert not (served.home.parent / "escape.sh").exists()
    garbage = api.post("/v1/infrastructures", content=b"\x1f\x8bnot really",
                       headers={"Content-Type": "application/gzip"})
    assert garbage.status_code == 400


def test_occopus_routes_keep_their_shapes_with_real_codes(served: Served) -> None:
    api = served.client(served.token())
    description = SPEC.format(name="occo-one").replace("count: 2", "count: 1")
    answer = api.post("/infrastructures/", content=description)
    assert answer.status_code == 200, answer.text
    infra_id = answer.json()["infraid"]
    assert infra_id in api.get("/infrastructures/").json()["infrastructures"]
    wait_until(lambda: len(ready_nodes(api, infra_id)) == 1, timeout=120, what="the Occopus node")
    report = api.get(f"/infrastructures/{infra_id}").json()
    assert report["web"]["scaling"] == {"actual": 1, "target": 1, "min": 1, "max": 4}
    instance = next(iter(report["web"]["instances"].values()))
    assert instance["state"] == "ready" and instance["resource_address"].startswith(("127.", "10.213."))
    assert api.post(f"/infrastructures/{infra_id}/scaleto/web/3").json() == {
        "method": "scaleto", "infraid": infra_id, "nodename": "web", "count": 3}
    wait_until(lambda: len(ready_nodes(api, infra_id)) == 3, timeout=120, what="scaleto 3")
    victim = ready_nodes(api, infra_id)[0]
    assert api.post(f"/infrastructures/{infra_id}/scaledown/web/{victim['address']}").status_code == 200
    wait_until(lambda: victim["id"] not in api.get(f"/infrastructures/{infra_id}").json()["web"]["instances"],
               timeout=120, what="the named victim gone")
    assert api.post(f"/infrastructures/{infra_id}/scaleup/nope").status_code == 404
    assert api.post("/infrastructures/deadbeef/scaleup/web").status_code == 404
    assert api.post(f"/infrastructures/{infra_id}/attach").status_code == 409  # maintained already
    assert api.post(f"/infrastructures/{infra_id}/detach").json() == {"infraid": infra_id}
    assert api.post("/infrastructures/", content="groups: [not, a, description]").status_code == 400
    assert api.delete(f"/infrastructures/{infra_id}").json() == {"infraid": infra_id}
    wait_until(lambda: api.get(f"/v1/infrastructures/{infra_id}").json()["state"] == "destroyed", timeout=120,
               what="the Occopus teardown")


def test_a_restarted_server_keeps_maintaining(served: Served) -> None:
    api = served.client(served.token())
    infra_id = create(api, "outlives", count=2)
    before = {n["name"] for n in ready_nodes(api, infra_id)}
    assert served.stop() in (0, -signal.SIGTERM)  # SIGTERM: passes finish, nothing is torn down
    assert "stopped; the passes in progress finished, nothing was torn down" in served.log_text()
    served.start()
    assert {n["name"] for n in ready_nodes(api, infra_id)} == before  # the same nodes, still up
    victim = sorted(before)[0]
    os.kill(_sshd_pid(served.home, victim), signal.SIGKILL)
    wait_until(lambda: victim not in {n["name"] for n in ready_nodes(api, infra_id)}
               and len(ready_nodes(api, infra_id)) == 2, timeout=120, what="the killed node replaced after a restart")


def _sshd_pid(home: Path, node: str) -> int:
    from helpers import node_folders

    return int((node_folders(home)[node] / "sshd.pid").read_text().split()[0])


def test_a_bad_server_file_is_one_line_and_no_server(tmp_path: Path, home: Path) -> None:
    from helpers import cli

    for text, words in (("providers: {}\n", "at least one cloud"), ("providers:\n  x: {type: nimbus}\n", "x"),
                        ("clouds: 1\n", "unknown key 'clouds'"), ("providers: [a\n", "server.yml")):
        (tmp_path / "server.yml").write_text(text)
        done = cli("serve", "--config", str(tmp_path / "server.yml"), "--port", "1")
        assert done.returncode != 0 and words in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_exec_through_the_server_reuses_its_connections_until_they_idle_out(home: Path, tmp_path: Path) -> None:
    from helpers import logins, node_folders

    served = Served(home, write_config(tmp_path, {"local": "local"}, interval=3600, ssh_idle_timeout=1)).start()
    try:
        api = served.client(served.token())
        infra_id = create(api, "warm", count=2)

        def run(command: str) -> dict[str, object]:
            job = api.post(f"/v1/infrastructures/{infra_id}/exec", json={"command": command}).json()
            done = wait_until(lambda: (j := api.get(f"/v1/jobs/{job['id']}").json())["state"] != "running" and j,
                              timeout=60, what=f"exec {command}")
            assert done["state"] == "done" and all(r["exit_code"] == 0 for r in done["results"]), done
            return dict(done)

        def count() -> dict[str, int]:
            return {name: logins(folder) for name, folder in node_folders(served.home).items()}

        run("true")
        first = count()
        run("uname -a")
        run("hostname")
        assert count() == first  # warm: no new login
        nodes = [(str(n["address"]), int(str(n["port"]))) for n in ready_nodes(api, infra_id)]
        assert all(_connections_to(a, p) for a, p in nodes)  # held open between commands
        # unused for longer than ssh_idle_timeout: closed; the next exec logs in again
        wait_until(lambda: not any(_connections_to(a, p) for a, p in nodes), timeout=30,
                   what="the warm connections closed once idle")
        run("true")
        assert all(count()[n] == first[n] + 1 for n in first)
    finally:
        served.stop()


def _connections_to(address: str, port: int) -> int:
    """Established TCP connections to ``address:port`` on this machine (from /proc/net/tcp)."""
    import socket
    import struct

    wanted = f"{struct.unpack('<I', socket.inet_aton(address))[0]:08X}:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[2] == wanted and row.split()[3] == "01")
