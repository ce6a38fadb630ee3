"""The dashboard's pictures, drawn by the server as values its templates turn into inline SVG (no script library,
no CDN): each group's desired / total / healthy nodes over time, from the ``sizes`` events, and each group's metric
over its kept samples against its policy's target or threshold, with the last scaling decisions marked."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from cloudherd.api.metric_history import MetricHistory

# -- the picture: desired / healthy / total per group over time, from the ``sizes`` events --------------

PLOT_W, PLOT_H, PAD = 560, 150, 28
SERIES = (("desired", "#6b7580"), ("total", "#0969da"), ("healthy", "#1a7f37"))


def plot_sizes(events: list[Any], now: Any) -> list[dict[str, Any]]:
    """Per group: SVG polylines (step lines) of its desired, healthy and total nodes, from the ``sizes`` events
    the manager writes when a pass changed something, closed by what the page shows now."""
    samples: dict[str, list[tuple[float, dict[str, int]]]] = {}
    for event in events:
        for part in event.message.split("; "):
            name, _, rest = part.partition(" ")
            values = dict(item.split("=", 1) for item in rest.split() if "=" in item)
            if all(k in values and values[k].isdigit() for k, _ in SERIES):
                samples.setdefault(name, []).append((event.at.timestamp(), {k: int(values[k]) for k, _ in SERIES}))
    plots = []
    for group in now.groups:
        points = samples.get(group.name, [])
        if not points:
            continue
        end = max(points[-1][0] + 1, now.updated_at.timestamp())
        points = [*points, (end, {"desired": group.count, "total": group.actual, "healthy": group.healthy})]
        start = points[0][0]
        top = max(1, *(max(p.values()) for _, p in points))

        def x(t: float, start: float = start, end: float = end) -> float:
            return round(PAD + (t - start) / max(end - start, 1e-9) * (PLOT_W - 2 * PAD), 1)

        def y(v: int, top: int = top) -> float:
            return round(PLOT_H - PAD - v / top * (PLOT_H - 2 * PAD), 1)

        lines = []
        for key, colour in SERIES:
            path, last = [], None
            for t, values in points:
                if last is not None:
                    path.append(f"{x(t)},{y(last)}")  # a step: the count held until it changed
                path.append(f"{x(t)},{y(values[key])}")
                last = values[key]
            lines.append({"key": key, "colour": colour, "points": " ".join(path), "now": points[-1][1][key]})
        plots.append({"group": group.name, "lines": lines, "top": top, "width": PLOT_W, "height": PLOT_H,
                      "pad": PAD, "y_top": y(top), "y_zero": y(0), "since": points[0][0]})
    return plots


# -- a group's metric over its kept samples, against its policies' target or threshold --------------------

METRIC_W, METRIC_H = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 26  # the plot area's margins: the value axis's labels left, times below
LEVEL_COLOURS = {"target": "#1a7f37", "threshold": "#cf222e"}
DECISION_COLOURS = {"scale-out": "#bc4c00", "scale-in": "#8250df"}


def value_axis(values: Iterable[float]) -> tuple[float, float]:
    """The low and high ends of a value axis showing ``values`` (the samples and the policies' levels): zero in
    sight, a twentieth of the span as headroom above (rounded up to two significant digits, for its label),
    never an empty span."""
    seen = [0.0, *values]
    low, high = min(seen), max(seen)
    if high <= low:
        high = low + 1.0
    high += (high - low) / 20
    if high > 0:
        step = 10.0 ** (math.floor(math.log10(high)) - 1)
        high = round(math.ceil(round(high / step, 9)) * step, 12)
    return low, high


def y_of(value: float, low: float, high: float, top: float, bottom: float) -> float:
    """Where ``value`` is drawn on an axis from ``low`` (at ``bottom``) to ``high`` (at ``top``): SVG's y grows
    downwards, so a higher value is a smaller y.  Clamped to the axis; an empty axis puts everything midway."""
    if high <= low:
        return round((top + bottom) / 2, 1)
    share = min(max((value - low) / (high - low), 0.0), 1.0)
    return round(bottom - share * (bottom - top), 1)


def x_of(moment: float, start: float, end: float, left: float, right: float) -> float:
    """Where the moment ``moment`` (seconds) is drawn on a time axis from ``start`` to ``end``: one moment alone,
    at the right (now)."""
    if end <= start:
        return round(right, 1)
    share = min(max((moment - start) / (end - start), 0.0), 1.0)
    return round(left + share * (right - left), 1)


def _num(value: float) -> str:
    return f"{value:.4g}"


def plot_metrics(histories: Sequence[MetricHistory]) -> list[dict[str, Any]]:
    """Per group and metric: an SVG polyline of its samples (a point each, oldest left), a horizontal line at each
    policy's target or threshold, a mark at each scaling decision, and the words a screen reader says."""
    plots = []
    left, right, top, bottom = LEFT, METRIC_W - RIGHT, TOP, METRIC_H - BOTTOM
    for index, h in enumerate(histories):
        low, high = value_axis([*(p.value for p in h.points), *(level.value for level in h.levels)])
        start = h.points[0].at.timestamp()
        end = max([h.points[-1].at.timestamp(), *(d.at.timestamp() for d in h.decisions)])

        def x(moment: datetime, start: float = start, end: float = end) -> float:
            return x_of(moment.timestamp(), start, end, left, right)

        def y(value: float, low: float = low, high: float = high) -> float:
            return y_of(value, low, high, top, bottom)

        values = [p.value for p in h.points]
        latest = h.latest
        levels = [{"kind": level.kind, "value": _num(level.value), "y": y(level.value), "policy": level.policy,
                   "colour": LEVEL_COLOURS.get(level.kind, "#6b7580")} for level in h.levels]
        marks = [{"x": x(d.at), "kind": d.kind, "reason": d.reason, "at": d.at.strftime("%H:%M:%S"),
                  "colour": DECISION_COLOURS.get(d.kind, "#6b7580")} for d in h.decisions]
        said = [f"{h.metric} of group {h.group}: {len(values)} sample{'s' if len(values) != 1 else ''} from "
                f"{h.points[0].at.strftime('%H:%M:%S')} to {latest.at.strftime('%H:%M:%S')} UTC, lowest "
                f"{_num(min(values))}, highest {_num(max(values))}, latest {_num(latest.value)}"]
        said += [f"{level.kind} {_num(level.value)} ({level.policy})" for level in h.levels]
        said += [f"{d.kind} at {d.at.strftime('%H:%M:%S')}: {d.reason}" for d in h.decisions]
        plots.append({
            "id": f"metric-{index}", "group": h.group, "metric": h.metric, "width": METRIC_W, "height": METRIC_H,
            "left": left, "right": right, "top": top, "bottom": bottom,
            "points": " ".join(f"{x(p.at)},{y(p.value)}" for p in h.points),
            "last_x": x(latest.at), "last_y": y(latest.value),
            "high": _num(high), "low": _num(low), "y_high": y(high), "y_low": y(low),
            "since": h.points[0].at.strftime("%H:%M:%S"), "until": latest.at.strftime("%H:%M:%S"),
            "latest": _num(latest.value), "latest_nodes": latest.nodes, "latest_at": latest.at.strftime("%H:%M:%S"),
            "levels": levels, "marks": marks, "samples": len(values),
            "title": f"{h.group}: {h.metric} over the last {len(values)} samples",
            "desc": "; ".join(said) + ".",
        })
    return plots
