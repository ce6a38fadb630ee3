"""Shared folders never show cloudherd's own folder: a share of ``/``, of the data folder's parent, or of a
link leading there shows an empty folder where the data folder is (no keys, no ``secrets.key``, no
``state.db``) while the rest of the shared tree is seen; a share of the data folder or of a folder inside it
is refused, with a clear error.  A spec sent to a server cannot reach a cloud the server does not offer
(a placement included), and the server's own shares hide its data folder the same way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cli, node_folders, wait_until, write_spec
from server_harness import Served, serving

from cloudherd.api import SyncClient
from cloudherd.api.auth import secret_key_path
from cloudherd.errors import SpecError
from cloudherd.providers.local.sandbox import Share, hidden_in_node
from cloudherd.spec.confine import Confinement
from cloudherd.spec.loader import load_spec_text


def _secret_key(home: Path) -> str:
    """cloudherd's secrets.key, made as cloudherd makes it when it is not there yet; its text."""
    from cryptography.fernet import Fernet

    path = secret_key_path()
    assert path.parent == home / "keys"
    if not path.exists():
        path.write_bytes(Fernet.generate_key())
    return path.read_text().strip()


def test_cloudherd_folder_is_hidden_inside_every_share_that_holds_it(sandboxed: Path, tmp_path: Path) -> None:
    home = sandboxed  # <tmp_path>/cloudherd-home: tmp_path is the data folder's parent
    tag = uuid.uuid4().hex[:8]
    key_text = _secret_key(home)
    (tmp_path / "beside.txt").write_text(f"beside-{tag}\n")
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path)  # a link to the data folder's parent, shared by its own name
    spec = write_spec(tmp_path / "sh", "name: shares\nproviders:\n  local: {type: local, isolation: required, "
                      f"shared: ['/:/hostroot', '{tmp_path}:/parent', '{alias}:/alias']}}\n"
                      "groups:\n  n:\n    count: 1\n")
    herd = SyncClient()
    herd.up(spec)
    # what there is to hide, on the host
    assert {"keys", "local", "state.db"} <= {p.name for p in home.iterdir()}
    assert (home / "keys" / "secrets.key").is_file() and (home / "keys" / "id_ed25519").is_file()

    def run(command: str) -> tuple[bool, str]:
        [done] = herd.exec("shares", command, node="shares-n-1")
        assert done.error is None, done
        return done.ok, done.stdout + done.stderr

    for view, tree in ((f"/hostroot{home}", f"/hostroot{tmp_path}"), (f"/parent/{home.name}", "/parent"),
                       (f"/alias/{home.name}", "/alias")):
        listed_ok, listed = run(f"ls -A {view}")
        assert listed_ok and listed == "", (view, listed)  # an empty folder where the data folder is
        for secret in ("keys/secrets.key", "keys/id_ed25519", "state.db"):
            read_ok, read = run(f"cat {view}/{secret}")
            assert not read_ok and "No such file" in read and key_text not in read, (view, secret, read)
        keys_ok, keys = run(f"ls {view}/keys")
        assert not keys_ok and "secrets.key" not in keys and "id_ed25519" not in keys, (view, keys)
        nodes_ok, nodes = run(f"ls {view}/local")  # the nodes' folders (host keys, other nodes' homes)
        assert not nodes_ok and "ln-" not in nodes, (view, nodes)
        beside_ok, beside = run(f"cat {tree}/beside.txt; ls {tree}")  # the rest of the shared tree is seen
        assert beside_ok and beside.startswith(f"beside-{tag}\n") and home.name in beside.split(), (view, beside)
    # and through a search of the whole tree: no secrets.key, no state.db anywhere under the shares
    found_ok, found = run(f"find /hostroot{tmp_path} /parent /alias/ -name secrets.key -o -name 'state.db*' "
                          "-o -name id_ed25519")
    assert found_ok and found == "", found
    herd.down("shares")


def test_a_share_of_cloudherd_folder_or_inside_it_is_refused(home: Path, tmp_path: Path) -> None:
    """Refused before any node is made (so on any computer, sandbox or not), naming the setting."""
    _secret_key(home)
    link = tmp_path / "to-keys"
    link.symlink_to(home / "keys")
    for index, (share, words) in enumerate([
        (f"{home}/keys:/k", f"{home / 'keys'} is inside cloudherd's own folder {home}"),
        (f"{link}", f"{home / 'keys'} is inside cloudherd's own folder {home}"),  # a link is followed
        (f"{home}/local:/nodes", f"{home / 'local'} is inside cloudherd's own folder {home}"),
        (f"{home}:/data", f"{home} is cloudherd's own folder {home}"),
    ]):
        spec = write_spec(tmp_path / f"bad{index}", f"name: bad{index}\nproviders:\n  local: {{type: local, "
                          f"shared: ['{share}']}}\ngroups:\n  n:\n    count: 1\n")
        refused = cli("up", str(spec))
        assert refused.returncode != 0, (share, refused.stdout, refused.stderr)
        assert "local provider 'local', setting shared:" in refused.stderr, (share, refused.stderr)
        assert words in refused.stderr and "share a folder outside it" in refused.stderr, (share, refused.stderr)
        assert "Traceback" not in refused.stderr + refused.stdout
    assert node_folders(home) == {}  # nothing was made


def test_where_a_share_shows_a_hidden_folder() -> None:
    """The paths covered in a node, for shares of ``/``, ``/root``, the folder's parent, elsewhere."""
    data = Path("/root/.local/share/cloudherd")
    shares = [Share(Path("/"), Path("/hostroot")), Share(Path("/root"), Path("/r")),
              Share(Path("/root/.local/share"), Path("/share")), Share(Path("/srv"), Path("/srv")),
              Share(data, Path("/itself"))]
    assert hidden_in_node([data], shares) == sorted([
        data, Path("/hostroot/root/.local/share/cloudherd"), Path("/r/.local/share/cloudherd"),
        Path("/share/cloudherd"), Path("/itself")])
    assert hidden_in_node([data], []) == [data]


def _confined(tmp_path: Path, text: str, offered: dict[str, dict[str, str]]) -> SpecError:
    path = tmp_path / "cloudherd.yml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, path, within=Confinement(offered))
    return caught.value


def test_a_network_spec_reaches_no_cloud_the_server_does_not_offer(tmp_path: Path) -> None:
    """Its own providers (with a share of /) are refused, and so is a placement on a bare type: ``local``
    would be made with defaults (the server's CLOUDHERD_LOCAL_SHARED, isolation auto), not the server's
    settings, and ``aws`` with the server's ambient credentials."""
    offered = {"here": {"type": "local", "isolation": "required"}}
    own = _confined(tmp_path, "name: p\nproviders:\n  here: {type: local, shared: ['/:/hostroot']}\n"
                    "groups:\n  web: {provider: here, count: 1}\n", offered)
    assert own.line == 2 and "remove 'providers:'" in str(own), str(own)
    for bare in ("local", "aws"):
        placed = _confined(tmp_path, "name: p\ngroups:\n  web:\n    provider: here\n    count: 2\n"
                           f"    placement:\n      - {{provider: here, max: 1}}\n      - {{provider: {bare}}}\n",
                           offered)
        assert placed.line == 8 and placed.path == "groups.web.placement.1.provider", str(placed)
        assert f"'{bare}' is not offered by this server (offered: here)" in str(placed)
    fine = tmp_path / "fine.yml"
    fine.write_text("name: p\ngroups:\n  web:\n    provider: here\n    placement: [{provider: here}]\n")
    assert load_spec_text(fine.read_text(), fine, within=Confinement(offered)).spec.groups["web"].provider == "here"


@pytest.fixture
def served_with_root_share(sandboxed: Path, tmp_path: Path) -> Iterator[Served]:
    """A server whose own configuration shares ``/`` with its local nodes (the operator's choice)."""
    _secret_key(sandboxed)  # the key the server seals its secrets with, made first as it would make it
    with serving(sandboxed, tmp_path, {"here": "local, isolation: required, shared: ['/:/hostroot']"},
                 interval=0.5) as running:
        yield running


def test_the_servers_own_shares_hide_its_data_folder(served_with_root_share: Served, tmp_path: Path) -> None:
    served = served_with_root_share
    api = served.client(served.token())
    home = served.home
    key_text = (home / "keys" / "secrets.key").read_text().strip()
    tag = uuid.uuid4().hex[:8]
    (tmp_path / "beside.txt").write_text(f"beside-{tag}\n")
    view = f"/hostroot{home}"
    script = (f"echo listed: $(ls -A {view}); cat /hostroot{tmp_path}/beside.txt; "
              f"cat {view}/keys/secrets.key {view}/state.db 2>&1; ls {view}/keys 2>&1; true")
    spec = (f"name: look\ngroups:\n  web:\n    provider: here\n    count: 1\n    scripts:\n"
            f"      - name: look.sh\n        content: \"{script}\"\n")
    made = api.post("/v1/infrastructures", content=spec, headers={"Content-Type": "application/yaml"})
    assert made.status_code == 201, made.text
    infra_id = made.json()["id"]

    def printed() -> str:
        runs = api.get(f"/v1/infrastructures/{infra_id}/logs").json()
        return next((r["stdout"] for r in runs if r["name"].endswith("look.sh") and r["exit_code"] == 0), "")

    out = wait_until(printed, 120, "the script's run on the made node")
    assert out.startswith(f"listed:\nbeside-{tag}\n"), out
    assert "No such file" in out and key_text not in out and "secrets.key" not in out.replace(
        f"{view}/keys/secrets.key: No such file", ""), out
    gone = api.delete(f"/v1/infrastructures/{infra_id}")
    assert gone.status_code == 202, gone.text
    wait_until(lambda: api.get(f"/v1/jobs/{gone.json()['id']}").json()["state"] == "done", timeout=120,
               what="the teardown")
