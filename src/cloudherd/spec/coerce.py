"""How a spec's values are read: strict models, values from the environment as text coerced to what a key
wants, durations, memory sizes, and the errors that point at a part of a value (the loader gives their lines)."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationInfo

from cloudherd.spec.durations import FORMS, DurationError, is_bare_number, parse_duration
from cloudherd.spec.interpolate import EnvText


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_ENV_INT = re.compile(r"^\s*[-+]?[0-9]{1,18}\s*$")


_ENV_FLOAT = re.compile(r"^\s*[-+]?([0-9]{1,18}(\.[0-9]{0,18})?|\.[0-9]{1,18})([eE][-+]?[0-9]{1,3})?\s*$")


LENIENT = "lenient"  # validation context key: re-reading a stored snapshot, coerce as pydantic's lax mode did


def lenient(info: ValidationInfo) -> bool:
    """Whether this validation re-reads a stored snapshot (taken by an older, laxer cloudherd): never refuse it."""
    return bool(info.context and info.context.get(LENIENT))


def _int_from_env(value: Any, info: ValidationInfo) -> Any:
    """A number from ``${VAR}`` (the environment is text); anything else must already be an integer."""
    if isinstance(value, str) and (isinstance(value, EnvText) or lenient(info)) and _ENV_INT.match(value):
        return int(value)
    if lenient(info) and (isinstance(value, bool) or (isinstance(value, float) and value.is_integer())):
        return int(value)
    return value


def _float_from_env(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str) and (isinstance(value, EnvText) or lenient(info)) and _ENV_FLOAT.match(value):
        return float(value)
    if lenient(info) and isinstance(value, bool):
        return float(value)
    return value


def _bool_from_env(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str) and (isinstance(value, EnvText) or lenient(info)):
        word = value.strip().lower()
        if word in ("true", "yes", "on", "1"):
            return True
        if word in ("false", "no", "off", "0"):
            return False
    return value


def _duration(value: Any, info: ValidationInfo) -> float:
    """Seconds from ``10`` / ``0.5`` / ``"500ms"`` / ``"1m30s"`` (text without a unit only from ``${VAR}``)."""
    if lenient(info) and isinstance(value, bool):
        return float(value)
    return parse_duration(value, bare_text=isinstance(value, EnvText) or lenient(info))


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


_MEMORY_FACTORS_MIB = {"B": 1 / (1024 * 1024), "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def memory_mib(text: str | int | float) -> int:
    """``"8G"`` / ``"512M"`` / ``"1.5GiB"`` as MiB; a bare number is GiB (as in ``memory: 8``)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError("must be an amount of memory like 8G or 512M")
    if isinstance(text, int | float):
        number, unit = float(text), "G"
    else:
        match = _MEMORY.match(text)
        if not match:
            raise ValueError(f"'{text}' is not an amount of memory (write it like 8G or 512M)")
        number, unit = float(match.group(1)), (match.group(2) or "G")[0].upper()
    if not math.isfinite(number) or number <= 0 or number > 1024 ** 3:
        raise ValueError(f"'{text}' is not an amount of memory (write it like 8G or 512M)")
    return int(number * _MEMORY_FACTORS_MIB[unit])


def _unhealthy_after(value: Any, info: ValidationInfo) -> Any:
    """A count of failed checks (``3``, ``"3"``) stays an ``int``; a duration (``"30s"``) stays its text."""
    if isinstance(value, bool):
        if lenient(info):
            return 3
        raise ValueError("must be a number of failed checks (e.g. 3) or a duration (e.g. 30s), not true/false")
    if isinstance(value, float) and value.is_integer() and lenient(info):
        value = int(value)
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not a whole number of failed checks (or write a duration like 30s)")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{value} failed checks: must be at least 1 (or a duration like 30s)")
        return value
    if isinstance(value, str) and is_bare_number(value):
        if not re.match(r"^\s*[0-9]+\s*$", value):
            raise ValueError(f"'{value}' is not a whole number of failed checks (or write a duration like 30s)")
        return _unhealthy_after(int(value), info)
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except DurationError:
            raise ValueError(f"'{value}' is neither a number of failed checks (e.g. 3) nor a duration "
                             f"({FORMS})") from None
        if seconds <= 0:
            raise ValueError(f"'{value}': failing for no time at all; write a duration above 0, or a count")
        return value.strip()
    raise ValueError("must be a number of failed checks (e.g. 3) or a duration (e.g. 30s)")


_PERCENT = re.compile(r"^\s*([0-9]{1,3}(?:\.[0-9]{1,6})?)\s*%\s*$")


def _max_unhealthy(value: Any, info: ValidationInfo) -> Any:
    """A count (``2``, ``"2"``) stays an ``int``; a percent (``"40%"``) stays its text, without spaces."""
    if isinstance(value, bool):
        if lenient(info):
            return "40%"
        raise ValueError("must be a number of nodes (e.g. 2) or a percent of the group (e.g. 40%), not true/false")
    if isinstance(value, float) and value.is_integer() and lenient(info):
        value = int(value)
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not a whole number of nodes (or write a percent like 40%)")
    if isinstance(value, str) and re.match(r"^\s*[0-9]{1,9}\s*$", value):
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} nodes: must be ≥ 0 (or a percent like 40%)")
        return value
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if not match:
            raise ValueError(f"'{value}' is neither a number of nodes (e.g. 2) nor a percent (e.g. 40%)")
        if Fraction(match.group(1)) > 100:
            raise ValueError(f"'{value}' is more than 100%")
        return f"{match.group(1)}%"
    raise ValueError("must be a number of nodes (e.g. 2) or a percent of the group (e.g. 40%)")


class _SubValueError(ValueError):
    """A field validator's error about a part of its value (``sub``, a key path below the field)."""

    def __init__(self, sub: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.sub = sub
        self.message = message


class _LocatedValueError(ValueError):
    """A cross-field error that knows which key it is about, so the loader can point at its line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


# Strict numbers: YAML's true, "3" and 3.5 are not integers (pydantic's lax mode would take them).
Int = Annotated[int, Strict(), BeforeValidator(_int_from_env)]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False), BeforeValidator(_float_from_env)]
Bool = Annotated[bool, Strict(), BeforeValidator(_bool_from_env)]


# A duration in seconds: a number (int or float, ≥ 0) or text with units; true/false is refused.
Duration = Annotated[float, BeforeValidator(_duration)]
