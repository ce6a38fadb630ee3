"""The dashboard's metric plot, its geometry alone: a value's y on the value axis (SVG's y grows downwards), a
moment's x on the time axis, and the axis's ends for what it must show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloudherd.api.metric_history import Level, MetricHistory, Point, ScalingDecision
from cloudherd.server.plots import plot_metrics, value_axis, x_of, y_of


def test_a_higher_value_is_drawn_higher() -> None:
    low, high, top, bottom = 0.0, 100.0, 10.0, 110.0
    assert y_of(0, low, high, top, bottom) == bottom
    assert y_of(100, low, high, top, bottom) == top
    assert y_of(50, low, high, top, bottom) == 60.0
    ys = [y_of(v, low, high, top, bottom) for v in (0, 12.5, 33, 80, 99.9)]
    assert ys == sorted(ys, reverse=True) and len(set(ys)) == len(ys)


def test_the_value_axis_is_clamped_and_never_empty() -> None:
    assert y_of(-5, 0, 10, 0, 100) == 100 and y_of(15, 0, 10, 0, 100) == 0
    assert y_of(3, 3, 3, 0, 100) == 50  # no span: midway, not a division by zero
    assert value_axis([]) == (0.0, 1.1)
    assert value_axis([7, 7]) == (0.0, 7.4)  # zero in sight, a twentieth of headroom, two significant digits
    assert value_axis([-2, 8]) == (-2.0, 8.5)
    assert value_axis([58.84]) == (0.0, 62.0) and value_axis([0.3]) == (0.0, 0.32)
    assert value_axis([-5, -1]) == (-5.0, 0.25)
    low, high = value_axis([20, 40, 50])  # the samples and a target of 50: the target's line inside the plot
    assert low <= 20 and high > 50


def test_time_runs_left_to_right() -> None:
    assert x_of(0, 0, 100, 10, 110) == 10 and x_of(100, 0, 100, 10, 110) == 110 and x_of(25, 0, 100, 10, 110) == 35
    assert x_of(5, 5, 5, 10, 110) == 110  # one moment alone: at the right end, now


def test_a_plot_has_a_point_per_sample_its_levels_and_words() -> None:
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    values = [10.0, 30.0, 20.0, 45.0]
    history = MetricHistory(
        "web", "cpu", tuple(Point(start + timedelta(seconds=10 * i), v, 2) for i, v in enumerate(values)),
        (Level("target", 40.0, "target tracking: cpu at 40"),),
        (ScalingDecision(start + timedelta(seconds=30), "scale-out", "cpu 45 > 40 → +1 (2 → 3)"),))
    [plot] = plot_metrics([history])
    points = [tuple(map(float, p.split(","))) for p in plot["points"].split()]
    assert len(points) == len(values)
    assert [x for x, _ in points] == sorted(x for x, _ in points)
    by_value = [y for _, y in sorted(zip(values, (y for _, y in points), strict=True))]
    assert by_value == sorted(by_value, reverse=True)  # the higher the value, the smaller its y
    [target] = plot["levels"]
    assert target["kind"] == "target" and points[1][1] > target["y"] > points[3][1]  # 30 below 40 below 45
    [mark] = plot["marks"]
    assert mark["x"] == points[3][0] and mark["kind"] == "scale-out"
    assert plot["latest"] == "45" and "latest 45" in plot["desc"] and "target 40" in plot["desc"]
    assert "scale-out at 12:00:30" in plot["desc"]


def test_a_plot_of_one_sample_without_policy_or_decision() -> None:
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    [plot] = plot_metrics([MetricHistory("web", "load1", (Point(at, 0.5, 1),), (), ())])
    [(x, y)] = [tuple(map(float, p.split(","))) for p in plot["points"].split()]
    assert (x, y) == (plot["right"], plot["last_y"]) and plot["top"] < y < plot["bottom"]
    assert plot["levels"] == [] and plot["marks"] == [] and plot["latest"] == "0.5"
    assert plot["desc"] == ("load1 of group web: 1 sample from 12:00:00 to 12:00:00 UTC, lowest 0.5, highest 0.5, "
                            "latest 0.5.")
