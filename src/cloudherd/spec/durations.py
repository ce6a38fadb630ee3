"""Durations in a spec: a number of seconds (``10``, ``0.5``) or text with units (``500ms``, ``1m30s``)."""

from __future__ import annotations

import math
import re

FORMS = "a number of seconds, or like 500ms, 10s, 2m, 1h, 1m30s"
MAX_SECONDS = 365 * 24 * 3600.0  # a year: more is a typo (and overflows some timers)

_NUMBER = r"(?:[0-9]{1,12}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})"
# units in descending order, each at most once: 1d12h, 1h30m, 2m, 10s, 1m30s, 1s500ms
_DURATION = re.compile(
    rf"^\s*(?:(?P<d>{_NUMBER})\s*d\s*)?(?:(?P<h>{_NUMBER})\s*h\s*)?(?:(?P<m>{_NUMBER})\s*m(?!s)\s*)?(?:(?P<s>{_NUMBER})\s*s\s*)?"
    rf"(?:(?P<ms>{_NUMBER})\s*ms\s*)?$",
    re.IGNORECASE,
)
_BARE = re.compile(rf"^\s*{_NUMBER}\s*$")
_FACTORS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class DurationError(ValueError):
    """A value that is not a duration; the message names the accepted forms."""


def is_bare_number(text: str) -> bool:
    """``"10"`` / ``"0.5"``: a number written as text, without a unit."""
    return bool(_BARE.match(text))


def parse_duration(value: object, *, bare_text: bool = False) -> float:
    """Seconds (a ``float`` ≥ 0) from a number or from text with units.

    ``true``/``false`` are refused; text without a unit (``"10"``) only with ``bare_text`` (a value from
    the environment, or a stored snapshot re-read), as a quoted ``"3"`` is not a number elsewhere either.
    """
    if isinstance(value, bool):
        raise DurationError(f"must be a duration ({FORMS}), not true/false")
    if isinstance(value, int | float):
        seconds = float(value)
        shown = repr(value)
    elif isinstance(value, str):
        shown = f"'{value}'"
        if _BARE.match(value):
            if not bare_text:
                raise DurationError(f"{shown} has no unit: write {value.strip()}s, or the number unquoted")
            seconds = float(value)
        else:
            match = _DURATION.match(value)
            if not match or not any(match.group(unit) for unit in _FACTORS):
                raise DurationError(f"{shown} is not a duration ({FORMS})")
            seconds = sum(float(match.group(unit)) * factor for unit, factor in _FACTORS.items()
                          if match.group(unit))
    else:
        raise DurationError(f"must be a duration ({FORMS})")
    if not math.isfinite(seconds):
        raise DurationError(f"{shown} is not a finite duration ({FORMS})")
    if seconds < 0:
        raise DurationError(f"{shown} is negative: a duration is {FORMS}")
    if seconds > MAX_SECONDS:
        raise DurationError(f"{shown} is more than a year")
    return seconds


def format_duration(seconds: float) -> str:
    """``90.0`` as ``1m30s``, ``0.5`` as ``500ms``: the way a spec writes it (for messages)."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000):d}ms"
    whole = int(seconds)
    rest = seconds - whole
    hours, remainder = divmod(whole, 3600)
    minutes, secs = divmod(remainder, 60)
    parts = [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes else []
    if secs or rest or not parts:
        parts.append(f"{secs + rest:g}s" if rest else f"{secs}s")
    return "".join(parts)


def positive_seconds(value: object, what: str) -> float:
    """``value`` as a number of seconds above 0 (a time-out, an interval), else a :class:`DurationError` saying
    so for ``what``; every face checks its durations here, and says the message its own way."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:  # NaN is not > 0
        shown = f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else repr(value)
        raise DurationError(f"{what} must be more than 0 seconds (got {shown})")
    return float(value)


def duration_setting(variable: str, raw: str | None, default: float, example: str) -> float:
    """Seconds from an environment variable's text (``raw``; unset or blank: ``default``), above zero; a
    UsageError naming ``variable`` and an ``example`` of a good value otherwise."""
    text = (raw or "").strip()
    if not text:
        return default
    try:
        seconds = parse_duration(text, bare_text=True)
    except DurationError:
        seconds = 0.0
    if seconds <= 0:
        from cloudherd.errors import UsageError

        raise UsageError(f"{variable}={text!r}: a duration above zero, such as {example}")
    return seconds
