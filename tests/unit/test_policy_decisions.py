"""Target tracking's decisions, as a pure function: out at once and in proportion, in slowly, bounds, cooldowns."""

from __future__ import annotations

from pathlib import Path

from cloudherd.engine.metrics import cpu_counters, cpu_percent, parse_proc, prometheus_value
from cloudherd.engine.policies import Since, decide, step_scaling, target_tracking
from cloudherd.spec.parts import StepScaling, TargetTracking

CPU = TargetTracking(metric="cpu", target=50, scale_in_after=3, scale_out_cooldown=60, scale_in_cooldown=300)


def test_scale_out_is_at_once_and_in_proportion_within_max() -> None:
    decision = target_tracking("web", CPU, [82.0], 2, 1, 10, Since())
    assert decision is not None and decision.desired == 4  # ceil(2 * 82 / 50)
    assert decision.reason == "cpu 82 > 50 → +2 (2 → 4)" and decision.direction(2) == "out"
    capped = target_tracking("web", CPU, [500.0], 2, 1, 5, Since())
    assert capped is not None and capped.desired == 5
    assert target_tracking("web", CPU, [500.0], 5, 1, 5, Since()) is None  # at max: nothing to ask


def test_scale_in_waits_for_its_samples_and_steps_by_a_tenth() -> None:
    assert target_tracking("web", CPU, [10.0, 10.0], 20, 1, 30, Since()) is None  # 2 of the 3 samples
    assert target_tracking("web", CPU, [60.0, 10.0, 10.0], 20, 1, 30, Since()) is None  # one of them above
    decision = target_tracking("web", CPU, [10.0, 12.0, 10.0], 20, 1, 30, Since())
    assert decision is not None and decision.desired == 18  # a tenth of 20, though 12/50 would want 5
    assert decision.reason == "cpu 10 < 50 for 3 of 3 samples → -2 (20 → 18)"
    small = target_tracking("web", CPU, [1.0, 1.0, 1.0], 3, 2, 30, Since())
    assert small is not None and small.desired == 2  # one step, and never below min
    assert target_tracking("web", CPU, [1.0, 1.0, 1.0], 2, 2, 30, Since()) is None
    off = CPU.model_copy(update={"disable_scale_in": True})
    assert target_tracking("web", off, [1.0, 1.0, 1.0], 3, 1, 30, Since()) is None


def test_cooldowns() -> None:
    assert target_tracking("web", CPU, [90.0], 2, 1, 10, Since(scale_out=30)) is None
    assert target_tracking("web", CPU, [90.0], 2, 1, 10, Since(scale_out=61)) is not None
    low = [10.0, 10.0, 10.0]
    assert target_tracking("web", CPU, low, 4, 1, 10, Since(any_scaling=299)) is None  # a scaling of any kind
    assert target_tracking("web", CPU, low, 4, 1, 10, Since(scale_out=400, any_scaling=301)) is not None


def test_the_machine_s_own_proc_files_parse() -> None:
    text = "\n".join([Path("/proc/stat").read_text().splitlines()[0],
                      *(line for line in Path("/proc/meminfo").read_text().splitlines()
                        if line.startswith(("MemTotal:", "MemAvailable:"))),
                      Path("/proc/loadavg").read_text().strip()])
    counters, memory, load1 = parse_proc(text)
    assert counters is not None and counters[0] > counters[1] > 0
    assert memory is not None and 0 < memory < 100 and load1 is not None and load1 >= 0
    later = cpu_counters(Path("/proc/stat").read_text().splitlines()[0])
    assert later is not None
    busy = cpu_percent(counters, (later[0] + 100, later[1] + 25))
    assert busy is not None and 0 <= busy <= 100
    assert cpu_percent(None, later) is None


def test_a_series_is_read_from_the_prometheus_text_format() -> None:
    text = ('# HELP jobs_waiting Jobs in the queue\n# TYPE jobs_waiting gauge\njobs_waiting{queue="a"} 3\n'
            'jobs_waiting{queue="b"} 4.5\njobs_done_total 17 1700000000000\n')
    assert prometheus_value(text, "jobs_waiting") == 7.5  # labelled series of a bare name: their sum
    assert prometheus_value(text, 'jobs_waiting{queue="b"}') == 4.5
    assert prometheus_value(text, "jobs_done_total") == 17
    assert prometheus_value(text, "absent") is None


def step(**fields: object) -> StepScaling:
    base: dict[str, object] = {"type": "step", "metric": "cpu", "threshold": 70, "evaluation_periods": 3,
                               "datapoints_to_alarm": 2, "cooldown": 0,
                               "steps": [{"lower_bound": 0, "upper_bound": 20, "adjustment": 1},
                                         {"lower_bound": 20, "adjustment": 3}]}
    return StepScaling.model_validate(base | fields)


def test_a_step_alarm_needs_its_datapoints_and_picks_the_step_of_the_newest() -> None:
    assert step_scaling("web", step(), [75.0, 60.0, 60.0], 2, 1, 10, Since()) is None  # 1 of 3 past
    small = step_scaling("web", step(), [75.0, 60.0, 80.0], 2, 1, 10, Since())
    assert small is not None and small.desired == 3  # 80 is 10 past 70: the first step
    assert small.reason == "cpu 80 >= 70 for 2 of 3 samples → +1 (2 → 3)"
    big = step_scaling("web", step(), [95.0, 60.0, 95.0], 2, 1, 4, Since())
    assert big is not None and big.desired == 4  # 25 past: +3, bounded by max 4
    assert step_scaling("web", step(cooldown=300), [95.0, 95.0, 95.0], 2, 1, 10, Since(any_scaling=100)) is None


def test_step_adjustment_types_and_a_scale_in_alarm() -> None:
    down = step(comparison="<", threshold=20, evaluation_periods=2, datapoints_to_alarm=None,
                steps=[{"upper_bound": 0, "adjustment": -50}], adjustment_type="percent_change_in_capacity",
                min_adjustment_magnitude=2)
    halved = step_scaling("web", down, [5.0, 5.0], 10, 1, 10, Since())
    assert halved is not None and halved.desired == 5
    assert halved.reason == "cpu 5 < 20 for 2 of 2 samples → -5 (10 → 5)"
    least = step_scaling("web", down, [5.0, 5.0], 3, 0, 10, Since())
    assert least is not None and least.desired == 1  # 50% of 3 is 1, at least 2
    exact = step(adjustment_type="exact_capacity", steps=[{"lower_bound": 0, "adjustment": 6}])
    decision = decide("web", exact, [90.0, 90.0, 90.0], 2, 1, 10, Since())
    assert decision is not None and decision.desired == 6
