"""The circuit breaker holds replacements back when a blip makes healthy machines look sick; nodes whose own
scripts failed are no such sign, and waiting for them to "recover" held a group short for good (found after
a kill -9 of serve cut a scale-out's deploys)."""

from __future__ import annotations

from pathlib import Path

from helpers import write_spec
from manager_helpers import FAST, passes_until, ready_names

from cloudherd.api import SyncClient

# the second and third node of the group fail their deploy; every later one succeeds
SCRIPT = "{% if node.name in ('flaky-web-2', 'flaky-web-3') %}exit 1{% endif %}\necho deployed\n"


def test_nodes_failed_by_their_scripts_are_replaced_whatever_the_breaker(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "f", "name: flaky\ngroups:\n  web:\n    count: 1\n    scripts: [s.sh]\n" + FAST,
                      {"s.sh": SCRIPT})
    herd = SyncClient()
    herd.up(spec)
    try:
        herd.scale("flaky", "web", "+2")
        view = passes_until(herd, "flaky", lambda v: len(ready_names(v)) == 3, what="the group back at 3 ready")
        assert ready_names(view) == {"flaky-web-1", "flaky-web-4", "flaky-web-5"}
        assert not [e for e in herd.events("flaky") if e.kind == "circuit-breaker"]
    finally:
        herd.down("flaky")
