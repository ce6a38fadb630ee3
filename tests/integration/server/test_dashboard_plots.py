"""The infrastructure page plots each group's metric over its kept samples (inline SVG, drawn by the server:
nothing fetched, no script needed) against its policy's target or threshold, with the group's last scaling
decisions marked and listed.  A real `cloudherd serve`; the samples and decisions written through the store as
the manager's passes write them (no node: the groups have none, so the server's own passes add no sample)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from server_harness import Served, create, serving

from cloudherd.state.repo import Store
from cloudherd.state.repo_metrics import KEEP_SAMPLES
from cloudherd.times import utcnow

SPEC = """\
name: {name}
groups:
  web:
    count: 0
    min: 0
    max: 4
    metrics:
      queue: {{command: 'echo 1'}}
    scaling:
      policies:
        - {{metric: queue, target: 40, warmup: 1h}}
  batch:
    count: 0
    min: 0
    max: 3
    scaling:
      policies:
        - {{type: step, metric: cpu, threshold: 70, warmup: 1h, steps: [{{lower_bound: 0, adjustment: 1}}]}}
  idle:
    count: 0
"""


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, interval=30) as running:
        yield running


def figure(page: str, group: str, metric: str) -> str:
    found = re.search(rf'<figure class="metric-plot" data-group="{group}" data-metric="{metric}">(.*?)</figure>',
                      page, re.S)
    assert found, page
    return found.group(1)


def points(svg: str) -> list[tuple[float, float]]:
    found = re.search(r'<polyline class="samples" points="([^"]*)"', svg)
    assert found, svg
    return [(float(x), float(y)) for x, y in (p.split(",") for p in found.group(1).split())]


def level_y(svg: str, kind: str) -> float:
    found = re.search(rf'<line class="level level-{kind}" data-value="[^"]*" x1="[^"]*" y1="([^"]*)"', svg)
    assert found, svg
    return float(found.group(1))


def test_each_group_s_metric_is_plotted_against_its_policy(served: Served) -> None:
    token = served.token()
    with served.client(token) as api:
        infra_id = create(api, "plots", count=0, spec=SPEC)

    # the manager's passes: web's queue more passes than are kept, batch's cpu five; a decision now and then
    store = Store()
    passes = KEEP_SAMPLES + 5
    start = utcnow() - timedelta(seconds=10 * (passes + 1))
    web = [float((i * 37) % 101) for i in range(passes - 1)] + [33.0]
    batch = [20.0, 50.0, 90.0, 85.0, 60.0]
    for i, value in enumerate(web):
        pass_samples = [("web", "queue", value, 2)] + ([("batch", "cpu", batch[i - passes + 5], 1)]
                                                        if i >= passes - 5 else [])
        store.add_samples(infra_id, pass_samples, at=start + timedelta(seconds=10 * i))
    store.add_event(infra_id, "scale-out", "web: queue 98 > 40 → +2 (1 → 3)")
    store.add_event(infra_id, "scale-in", "web: queue 33 < 40 for 3 of 3 samples → -1 (3 → 2)")
    store.add_event(infra_id, "scale-out", "batch: cpu 90 >= 70 (1 of 1 samples): +1 (0 → 1)")
    store.add_event(infra_id, "scale", "web: 2 → 2")  # a manual scale is no decision of a policy
    kept = [s.value for s in store.samples(infra_id, "web", "queue")]
    store.engine.dispose()
    assert kept == web[-KEEP_SAMPLES:]

    with httpx.Client(base_url=served.url, cookies={"cloudherd_session": token}, timeout=30) as browser:
        answer = browser.get(f"/ui/infrastructures/{infra_id}")
    assert answer.status_code == 200, answer.text
    page = answer.text
    assert "<script src=\"http" not in page and "cdn" not in page.lower()

    svg = figure(page, "web", "queue")
    drawn = points(svg)
    assert len(drawn) == KEEP_SAMPLES  # one point per kept sample, oldest left
    assert [x for x, _ in drawn] == sorted(x for x, _ in drawn) and drawn[0][0] < drawn[-1][0]
    for (value_a, (_, y_a)), (value_b, (_, y_b)) in zip(zip(kept, drawn, strict=True),
                                                        zip(kept[1:], drawn[1:], strict=True), strict=False):
        assert (value_a > value_b) == (y_a < y_b) and (value_a == value_b) == (y_a == y_b)
    target = level_y(svg, "target")
    assert all((y < target) == (v > 40) for v, (_, y) in zip(kept, drawn, strict=True) if v != 40)
    text = html.unescape(svg)
    assert re.search(r"<title id=\"[^\"]+\">web: queue", text) and "<desc id=" in text
    assert "latest 33" in text and "target 40" in text
    assert "scale-out: queue 98 > 40 → +2 (1 → 3)" in text and "scale-in: queue 33 < 40" in text
    assert "batch" not in text and "2 → 2" not in text
    assert len(re.findall(r'<line class="decision decision-scale-', svg)) == 2

    svg = figure(page, "batch", "cpu")
    drawn = points(svg)
    assert len(drawn) == len(batch)
    threshold = level_y(svg, "threshold")
    assert [y < threshold for _, y in drawn] == [v > 70 for v in batch]
    assert drawn[2][1] < drawn[3][1] < drawn[4][1] < drawn[1][1] < drawn[0][1]  # 90 > 85 > 60 > 50 > 20
    text = html.unescape(svg)
    assert "latest 60" in text and "threshold 70" in text and "cpu 90 >= 70" in text
    assert 'data-group="idle"' not in page.split("<h2>Metrics</h2>", 1)[1].split("<h2>Nodes</h2>", 1)[0]
