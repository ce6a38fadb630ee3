"""The notifications' sender's pace from the settings (``CLOUDHERD_WEBHOOK_TIMEOUT``, ``_ATTEMPTS``,
``_MAX_AGE``): the defaults when unset, the values when set, and a located error naming the variable otherwise."""

from __future__ import annotations

import pytest

from cloudherd.engine.outbox import Tuning
from cloudherd.errors import UsageError


def test_unset_is_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TIMEOUT", "ATTEMPTS", "MAX_AGE"):
        monkeypatch.delenv(f"CLOUDHERD_WEBHOOK_{name}", raising=False)
    assert Tuning.configured() == Tuning()


def test_set_values_change_the_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDHERD_WEBHOOK_TIMEOUT", "2s")
    monkeypatch.setenv("CLOUDHERD_WEBHOOK_ATTEMPTS", "3")
    monkeypatch.setenv("CLOUDHERD_WEBHOOK_MAX_AGE", "6h")
    tuning = Tuning.configured()
    assert (tuning.timeout, tuning.attempts, tuning.max_age) == (2.0, 3, 6 * 3600.0)
    assert tuning.claim_seconds == 2 * 2.0 + 30.0  # a claim outlasts the POST it covers
    assert (tuning.backoff, tuning.backoff_cap, tuning.poll) == (Tuning.backoff, Tuning.backoff_cap, Tuning.poll)


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("CLOUDHERD_WEBHOOK_TIMEOUT", "soon", "CLOUDHERD_WEBHOOK_TIMEOUT='soon': a duration above zero, such as 5s"),
    ("CLOUDHERD_WEBHOOK_TIMEOUT", "0", "CLOUDHERD_WEBHOOK_TIMEOUT='0': a duration above zero"),
    ("CLOUDHERD_WEBHOOK_MAX_AGE", "-1h", "CLOUDHERD_WEBHOOK_MAX_AGE='-1h': a duration above zero, such as 1d"),
    ("CLOUDHERD_WEBHOOK_ATTEMPTS", "0", "CLOUDHERD_WEBHOOK_ATTEMPTS='0': a whole number of attempts, 1 or more"),
    ("CLOUDHERD_WEBHOOK_ATTEMPTS", "2.5", "CLOUDHERD_WEBHOOK_ATTEMPTS='2.5': a whole number"),
])
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                        said: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UsageError) as refused:
        Tuning.configured()
    assert said in str(refused.value)
