"""Nothing a user types or runs at the same time may touch the wrong fleet or duplicate one: ids match
literally, one live infrastructure per name (in the database), one mutating operation at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import cli
from sqlalchemy.exc import IntegrityError

from cloudherd.api import SyncClient
from cloudherd.engine.locks import BusyError, holder_gone, infra_scope, try_hold
from cloudherd.errors import UsageError
from cloudherd.state.models import utcnow
from cloudherd.state.repo import Store

LIKE_METACHARACTERS = ["%", "_", "%%", "_%", "\\", "\\%", "[", "[a-f]%", "*", "?", ".", "^", "$"]


def _store(db_url: str) -> Store:
    """A store on ``db_url``: these tests run on SQLite and on PostgreSQL (the ``db_url`` fixture)."""
    from cloudherd.state.db import open_engine

    return Store(open_engine(db_url))


def _infra(store: Store, name: str, infra_id: str, state: str = "ready") -> None:
    user = store.ensure_user("someone", "ssh-ed25519 AAAA", "/dev/null")
    store.create_infrastructure(id=infra_id, name=name, owner_id=user.id, state=state, spec_path="/x.yml",
                                spec_text="name: x\n", ssh_user=None, ssh_key_path="/dev/null")


def test_ids_and_prefixes_match_literally(db_url: str) -> None:
    store = _store(db_url)
    _infra(store, "alpha", "ab12cd34ef56")
    _infra(store, "beta", "ab99ff00aa11")
    for pattern in LIKE_METACHARACTERS:
        for ref in (pattern, pattern + "e6", "a" + pattern, "%" + "ef56", "_b12cd34ef56"):
            with pytest.raises(UsageError, match="no infrastructure matches"):
                store.resolve(ref)
    assert store.resolve("ab12").name == "alpha"
    with pytest.raises(UsageError, match="ambiguous"):
        store.resolve("ab")
    with pytest.raises(UsageError, match="no infrastructure matches"):
        store.resolve("AB12")  # ids are case-sensitive (SQLite's LIKE is not)


def test_a_name_with_metacharacters_is_only_itself(db_url: str) -> None:
    store = _store(db_url)
    _infra(store, "web_1", "111111111111")
    _infra(store, "webx1", "222222222222")
    assert store.resolve("web_1").id == "111111111111"
    with pytest.raises(UsageError):
        store.resolve("web%")


@pytest.mark.scenario
def test_down_of_a_pattern_destroys_nothing(home: Path) -> None:
    spec = home.parent / "spec.yml"
    spec.write_text("name: keep\ngroups:\n  web:\n    count: 1\n")
    up = cli("up", str(spec))
    assert up.returncode == 0, up.stderr
    infra_id = up.stdout.strip()
    for ref in (f"%{infra_id[-4:]}", "%", "_" * len(infra_id), infra_id[:3] + "%"):
        result = cli("down", ref)
        assert result.returncode == 2 and "no infrastructure matches" in result.stderr, result.stderr
    assert json.loads(cli("status", infra_id, "--json").stdout)["state"] == "ready"
    assert cli("down", infra_id).returncode == 0


def test_the_database_refuses_a_second_live_infrastructure_of_one_name(db_url: str) -> None:
    store = _store(db_url)
    _infra(store, "web", "aaaaaaaaaaaa")
    with pytest.raises(IntegrityError):
        _infra(store, "web", "bbbbbbbbbbbb")
    _infra(store, "old", "cccccccccccc", state="destroyed")
    _infra(store, "old", "dddddddddddd", state="destroyed")  # history may repeat a name
    _infra(store, "old", "eeeeeeeeeeee")


def test_lease_is_exclusive_renewable_and_released(db_url: str) -> None:
    store = _store(db_url)
    scope = infra_scope("web")
    first = try_hold(store, scope, "up")
    assert first is not None
    assert try_hold(store, scope, "down") is None  # held by a live process: this one
    assert store.renew_lease(scope, first.owner, 30)
    assert not store.renew_lease(scope, "someone-else", 30)
    store.release_lease(scope, first.owner)
    second = try_hold(store, scope, "down")
    assert second is not None and second.fence == 1  # a fresh row after a release


def test_expired_lease_is_taken_over_with_a_higher_fence(db_url: str) -> None:
    store = _store(db_url)
    scope = infra_scope("web")
    taken, lease = store.take_lease(scope, "far-away", "manage", {"host": "another-host", "pid": 1}, ttl=0.001)
    assert taken and lease is not None
    assert try_hold(store, scope, "up") is not None  # expired: taken over
    lease = store.lease(scope)
    assert lease is not None and lease.fence == 2
    assert not store.renew_lease(scope, "far-away", 30)  # the old holder learns it lost the lease


def test_a_dead_local_holder_is_taken_over_at_once(db_url: str) -> None:
    store = _store(db_url)
    scope = infra_scope("web")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    import socket

    taken, lease = store.take_lease(scope, "crashed", "up", {"host": socket.gethostname(), "pid": child.pid,
                                                             "start": "1"}, ttl=3600)
    assert taken and lease is not None and holder_gone(lease)
    held = try_hold(store, scope, "up")
    assert held is not None and held.fence == 2
    mine = store.lease(scope)
    assert mine is not None and not holder_gone(mine)
    assert mine.expires_at.replace(tzinfo=None) > (utcnow() + timedelta(seconds=10)).replace(tzinfo=None)


def _spec(folder: Path, name: str, count: int = 1, pause: float = 0.5) -> Path:
    spec = folder / f"{name}.yml"
    spec.write_text(f"name: {name}\ngroups:\n  web:\n    count: {count}\n    scripts: [s.sh]\n")
    (folder / "s.sh").write_text(f"sleep {pause}; echo ran >> runs.txt\n")
    return spec


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cloudherd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("attempt", range(4))
def test_two_up_of_one_new_name_make_one_infrastructure_and_run_scripts_once(home: Path, attempt: int) -> None:
    spec = _spec(home.parent, f"race{attempt}")
    first, second = _start("up", str(spec)), _start("up", str(spec))
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert outs[0][0].strip() == outs[1][0].strip()  # the same infrastructure id
    herd = SyncClient()
    assert [i.name for i in herd.ls()] == [f"race{attempt}"]
    runs = herd.exec(f"race{attempt}", "cat runs.txt")
    assert [r.stdout for r in runs] == ["ran\n"]  # the second up waited, then found nothing to re-run
    assert any("waiting for up" in err for _, err in outs)
    herd.down(f"race{attempt}")


def test_second_down_waits_and_reports_the_truth(home: Path) -> None:
    spec = home.parent / "d.yml"
    spec.write_text("name: twice\ngroups:\n  web:\n    count: 2\n    teardown: t.sh\n")
    (home.parent / "t.sh").write_text("sleep 1\n")
    assert cli("up", str(spec)).returncode == 0
    first, second = _start("down", "twice"), _start("down", "twice")
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    late = next(err for _, err in outs if "waiting for down" in err)
    assert "already destroyed" in late
    assert SyncClient().infrastructure("twice").state == "destroyed"


def test_busy_infrastructure_refused_when_asked_not_to_wait(home: Path) -> None:
    spec = _spec(home.parent, "busy")
    gate = home.parent / "go"  # the first up's script waits for it (the test's folder is shared with nodes):
    # it holds the lease until the second up has been refused, however slow the machine is
    (home.parent / "s.sh").write_text(f"while [ ! -e {gate} ]; do sleep 0.05; done; echo ran >> runs.txt\n")
    first = _start("up", str(spec))
    herd = SyncClient()
    from helpers import wait_until

    wait_until(lambda: herd.aio.store.lease(infra_scope("busy")) is not None, 60, "the first up to take the lease")
    second = cli("up", str(spec), "--wait", "0")
    assert second.returncode == 3, second.stderr
    assert "busy is busy: up by" in second.stderr and "Traceback" not in second.stderr
    gate.touch()
    first.communicate(timeout=120)
    assert first.returncode == 0
    herd.down("busy")
    assert BusyError.exit_code == 3
