"""A spec sent to `serve` uses the server's clouds, the files sent with it and the environment it brought —
nothing of the server's: not its own providers (an unisolated local cloud), not a file beside the upload (the
server's private key), not the server's environment (its database URL), not a key file of the server's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import wait_until
from server_harness import Served, serving

SECRET = "s3cr3t-db-password-of-the-server"


@pytest.fixture
def served(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("PROBE_DB_URL", f"postgresql://cloudherd:{SECRET}@127.0.0.1/state")
    with serving(home, tmp_path, interval=0.5) as running:
        yield running


def _spec(body: str, name: str = "probe") -> str:
    return f"name: {name}\n{body}"


REFUSED = {
    "own_providers": (_spec("providers:\n  local: {type: local, isolation: none}\ngroups:\n  web: {count: 1}\n"),
                      "remove 'providers:' (offered: local)"),
    "cloud_not_offered": (_spec("groups:\n  web: {provider: aws, count: 1}\n"),
                          "'aws' is not offered by this server (offered: local)"),
    "teardown_outside": (_spec("groups:\n  web:\n    teardown: ../../../keys/id_ed25519\n"),
                         "outside the spec's bundle"),
    "script_absolute": (_spec("groups:\n  web:\n    scripts: [/etc/passwd]\n"), "outside the spec's bundle"),
    "script_home": (_spec("groups:\n  web:\n    scripts: ['~/.ssh/id_rsa']\n"), "no such file"),
    "user_data_outside": (_spec("groups:\n  web:\n    user_data: ../../secrets.key\n"), "outside the spec's bundle"),
    "ssh_key": (_spec("ssh: {key: /root/.ssh/id_ed25519}\ngroups:\n  web: {count: 1}\n"),
                "cannot name a key file on it"),
    "server_env": (_spec("groups:\n  web:\n    image: ${PROBE_DB_URL}\n"), "PROBE_DB_URL is not set"),
    "server_env_in_a_template": (_spec('groups:\n  web:\n    scripts:\n      - name: a.sh\n'
                                       '        content: "echo {{ env.PROBE_DB_URL }}"\n'), "template error"),
    "server_env_as_a_key": (_spec('groups:\n  web:\n    scripts:\n      - name: a.sh\n'
                                  '        content: "echo {{ {}[env.PROBE_DB_URL] }}"\n'), "template error"),
}


@pytest.mark.parametrize("route", ["/v1/plan", "/v1/infrastructures", "/infrastructures/"])
def test_what_the_server_keeps_for_itself_is_refused(served: Served, route: str) -> None:
    api = served.client(served.token())
    for case, (spec, words) in REFUSED.items():
        answer = api.post(route, content=spec, headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 400, (case, answer.status_code, answer.text)
        assert words in answer.text, (case, answer.text)
        assert SECRET not in answer.text and "PRIVATE KEY" not in answer.text, (case, answer.text)
    assert api.get("/v1/infrastructures").json() == []


def test_the_manager_renders_with_the_environment_sent_and_the_servers_cloud(served: Served) -> None:
    """The manager re-reads the stored spec at every pass: still confined (no server variable in `env`)."""
    api = served.client(served.token())
    spec = _spec('groups:\n  web:\n    count: 1\n    scripts:\n      - name: show.sh\n'
                 '        content: "echo env={{ env.get(\'PROBE_DB_URL\', \'unset\') }} n={{ env | length }}"\n',
                 name="shown")
    made = api.post("/v1/infrastructures", content=spec, headers={"Content-Type": "application/yaml"})
    assert made.status_code == 201, made.text
    infra_id = made.json()["id"]

    def printed() -> str:
        runs = api.get(f"/v1/infrastructures/{infra_id}/logs").json()
        return next((r["stdout"] for r in runs if r["name"].endswith("show.sh") and r["exit_code"] == 0), "")

    out = wait_until(printed, 120, "the script's run on the made node")
    assert out.strip() == "env=unset n=0", out
    groups = api.get(f"/v1/infrastructures/{infra_id}/groups").json()
    assert [g["provider"] for g in groups] == ["local"]
    events = json.dumps(api.get(f"/v1/infrastructures/{infra_id}/events",
                                headers={"Accept": "application/json"}).json())
    assert SECRET not in events
    assert httpx.get(f"{served.url}/healthz").status_code == 200
