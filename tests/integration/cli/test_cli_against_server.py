"""The CLI as a client of a shared `cloudherd serve` (CLOUDHERD_SERVER + CLOUDHERD_TOKEN, or `login`): the
same commands, output and exit codes, with no local state at all."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import HELLO, cli, wait_until
from server_harness import Served, write_config


def test_the_cli_drives_a_server(home: Path, tmp_path: Path) -> None:
    served = Served(home, write_config(tmp_path, {"local": "local"}, interval=1)).start()
    try:
        client_home = tmp_path / "client-home"
        env = {"CLOUDHERD_HOME": str(client_home), "CLOUDHERD_SERVER": served.url,
               "CLOUDHERD_TOKEN": served.token()}
        made = cli("up", str(HELLO), env=env, timeout=300)
        assert made.returncode == 0, made.stderr
        infra_id = made.stdout.strip().splitlines()[-1]
        assert "hello is ready: 3 node(s)" in made.stderr
        status = json.loads(cli("status", infra_id, "--json", env=env).stdout)
        assert status["ready_nodes"] == 3 and status["attached"]
        ran = cli("exec", infra_id, "hostname", "--json", env=env)
        assert ran.returncode == 0 and len(json.loads(ran.stdout)) == 3
        again = cli("up", str(HELLO), env=env, timeout=300)  # converges the same infrastructure
        assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == infra_id, again.stderr
        assert cli("scale", infra_id, "web", "+1", env=env).returncode == 0
        wait_until(lambda: json.loads(cli("status", infra_id, "--json", env=env).stdout)["ready_nodes"] == 4,
                   timeout=120, what="the fourth node through the server")
        assert [i["id"] for i in json.loads(cli("ls", "--json", env=env).stdout)] == [infra_id]
        assert json.loads(cli("events", infra_id, "--json", env=env).stdout.splitlines()[0])["kind"]
        # the same exit code as locally for a missing infrastructure; local-only commands say so
        local = cli("status", "nothing-here", env={"CLOUDHERD_HOME": str(tmp_path / "empty")})
        remote = cli("status", "nothing-here", env=env)
        assert remote.returncode == local.returncode != 0 and "nothing-here" in remote.stderr
        refused = cli("gc", env=env)
        assert refused.returncode != 0 and "not through a server" in refused.stderr
        bad = cli("ls", env={**env, "CLOUDHERD_TOKEN": "chd_wrong_token"})
        assert bad.returncode != 0 and "refused the token" in bad.stderr
        gone = cli("down", infra_id, env=env, timeout=300)
        assert gone.returncode == 0, gone.stderr
        assert json.loads(cli("ls", "--json", env=env).stdout) == []
        assert not (client_home / "state.db").exists()  # the client kept no state of its own
    finally:
        served.stop()
