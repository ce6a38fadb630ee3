"""A group metric read from each node's own exporter: a script on the node serves the Prometheus text format, the
manager reads one series of it over HTTP at each pass and a target-tracking policy follows it; a node's warm-up
keeps it out of the aggregate (no sample, no decision) until it has passed."""

from __future__ import annotations

from pathlib import Path

from helpers import wait_until, write_spec

from cloudherd.api import SyncClient
from cloudherd.state.repo import Store

EXPORTER = """\
printf '# TYPE queue_depth gauge\\nqueue_depth{queue="jobs"} 35\\nqueue_depth{queue="other"} 1\\n' > metrics
(setsid python3 -m http.server 9100 --bind 0.0.0.0 >/dev/null 2>&1 < /dev/null &)
"""


def spec(warmup: str) -> str:
    return ("name: exported\ngroups:\n  web:\n    count: 1\n    min: 1\n    max: 4\n"
            "    scripts: [exporter.sh]\n"
            "    metrics:\n      queue:\n        url: 'http://{{ node.address }}:9100/metrics'\n"
            "        series: 'queue_depth{queue=\"jobs\"}'\n"
            "    scaling:\n      policies:\n"
            f"        - {{metric: queue, target: 10, warmup: {warmup}, scale_out_cooldown: 0s}}\n")


def written(folder: Path, warmup: str) -> Path:
    return write_spec(folder, spec(warmup), {"exporter.sh": EXPORTER})


def test_a_url_metric_from_the_nodes_exporter_drives_the_policy_after_its_warmup(home: Path, tmp_path: Path) -> None:
    herd = SyncClient()
    herd.up(written(tmp_path / "p", "1h"))
    [node] = herd.status("exported").live
    def exported() -> bool:  # the exporter is started in the background by the node's script: up may end first
        [served] = herd.exec("exported", "curl -s http://127.0.0.1:9100/metrics")
        return 'queue_depth{queue="jobs"} 35' in served.stdout

    wait_until(exported, timeout=60, what="the node's exporter answering")
    herd.manage(["exported"], once=True)  # in its warm-up: left out of the aggregate, no decision
    store = Store()
    infra = store.active_named("exported")
    assert infra is not None
    assert store.samples(infra.id, "web", "queue") == []
    assert len(herd.status("exported").live) == 1

    herd.up(written(tmp_path / "p", "0s"))  # the same nodes, the warm-up now over
    herd.manage(["exported"], once=True)  # 35 for a target of 10 on 1 node: ceil(35 / 10) = 4
    assert [(s.value, s.nodes) for s in store.samples(infra.id, "web", "queue")] == [(35.0, 1)]
    assert [e.message for e in herd.events("exported") if e.kind == "scale-out"] == [
        "web: queue 35 > 10 → +3 (1 → 4)"]
    assert node.name in {n.name for n in herd.status("exported").live}
    store.engine.dispose()
    herd.down("exported")
