"""Occopus' InfrastructureManager verbs, on real local nodes: submit, provision, stop, tear down."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import wait_until, write_spec

from cloudherd.api import SyncClient, SyncInfrastructureManager
from cloudherd.api.manager import InfrastructureIDNotFoundError, InfrastructureIDTakenError


def test_add_maintains_then_stop_and_tear_down(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "o", "name: occo\ngroups:\n  web:\n    count: 2\n    scripts: [s.sh]\n"
                      "    health: {interval: 0.2s, grace: 0s, timeout: 1s}\n", {"s.sh": "echo hi > hi.txt\n"})
    herd = SyncClient()
    with SyncInfrastructureManager(interval=0.2) as manager:
        submitted = manager.submit_infrastructure(spec)
        assert herd.status(submitted).state == "creating" and herd.status(submitted).ready_nodes == 0  # nothing made
        manager.start_provisioning(submitted)
        with pytest.raises(InfrastructureIDTakenError):
            manager.start_provisioning(submitted)
        view = wait_until(lambda: (v := herd.status("occo")).ready_nodes == 2 and v.state == "ready" and v, 120,
                          "the first pass to make it")  # the pass marks it ready after its nodes are
        assert view.state == "ready" and view.attached and view.managed
        assert [r.stdout for r in herd.exec("occo", "cat hi.txt")] == ["hi\n", "hi\n"]
        assert manager.get(submitted).last is not None
        with pytest.raises(ValueError, match="stop_provisioning first"):
            manager.tear_down(submitted)
        manager.stop_provisioning(submitted)
        with pytest.raises(InfrastructureIDNotFoundError):
            manager.get(submitted)
        after = herd.status("occo")
        assert after.ready_nodes == 2 and not after.attached and not after.managed  # stopping tears nothing down
        manager.tear_down(submitted)
    assert herd.infrastructure("occo").state == "destroyed"
