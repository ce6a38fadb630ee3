"""``${VAR}`` in spec values: ``${NAME}``, ``${NAME:-default}`` (the default may hold references), ``$$``.

Anything else that starts with ``${`` is a mistake (``${UNSET``, ``${}``, ``${1X}``, ``${A-b}``) and
an :class:`InterpolationError`, never text passed through as written.  A ``$`` not followed by ``{``
or ``$`` is an ordinary character (``$HOME`` in a script's env stays for the node's shell).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPECIAL = re.compile(r"[$}]")
_SUPPORTED = "write ${NAME} or ${NAME:-default}, and $$ for a literal $"


class EnvText(str):
    """A value that came (in part) from the environment: numeric fields read it as a number."""

    __slots__ = ()


class InterpolationError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def interpolate(
    text: str, env: Mapping[str, str], *, strict: bool = True, on_value: Callable[[str, str], None] | None = None,
) -> str:
    """``text`` with its references replaced (an :class:`EnvText` when there was one).

    ``strict=False`` leaves an unset ``${NAME}`` as written, and a malformed reference too (the
    snapshot of a spec stored before references were checked must still be readable by ``down``).
    ``on_value(name, value)`` sees every variable used (to collect secrets).
    """
    if "$" not in text:
        return text
    try:
        out, end, used = _expand(text, 0, env, strict, on_value, nested=False, evaluate=True)
    except InterpolationError:
        if strict:
            raise
        return text
    assert end == len(text)
    return EnvText(out) if used else out


def _expand(
    text: str, i: int, env: Mapping[str, str], strict: bool, on_value: Callable[[str, str], None] | None,
    *, nested: bool, evaluate: bool,
) -> tuple[str, int, bool]:
    """Expand from ``i`` to the end (or, ``nested``, to the ``}`` closing a default); -> (text, end, used)."""
    out: list[str] = []
    used = False
    n = len(text)
    while i < n:
        special = _SPECIAL.search(text, i) if nested else None
        if nested:
            j = special.start() if special else n
        else:
            j = text.find("$", i)
            j = n if j < 0 else j
        out.append(text[i:j])
        i = j
        if i >= n:
            break
        if text[i] == "}":  # only when nested: the end of a default
            return "".join(out), i, used
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if not text.startswith("${", i):
            out.append("$")
            i += 1
            continue
        used = True
        value, i = _reference(text, i, env, strict, on_value, evaluate=evaluate)
        out.append(value)
    if nested:
        raise InterpolationError("a ${NAME:-default} is not closed with } (" + _SUPPORTED + ")")
    return "".join(out), i, used


def _reference(
    text: str, start: int, env: Mapping[str, str], strict: bool, on_value: Callable[[str, str], None] | None,
    *, evaluate: bool,
) -> tuple[str, int]:
    """One ``${…}`` starting at ``start``: -> (its value, the index after it)."""
    match = _NAME.match(text, start + 2)
    if match is None:
        if text.startswith("}", start + 2):
            raise InterpolationError("${} names no variable (" + _SUPPORTED + ")")
        shown = text[start:start + 12]
        raise InterpolationError(f"'{shown}…' is not a variable reference: a name is letters, digits and _, "
                                 "not starting with a digit (" + _SUPPORTED + ")")
    name, j = match.group(0), match.end()
    default: str | None = None
    if text.startswith("}", j):
        end = j + 1
    elif text.startswith(":-", j):
        default, close, _ = _expand(text, j + 2, env, strict, on_value, nested=True,
                                    evaluate=evaluate and name not in env)
        end = close + 1
    elif j >= len(text):
        raise InterpolationError(f"${{{name} is not closed with }} ({_SUPPORTED})")
    else:
        raise InterpolationError(f"'${{{name}{text[j]}' is not supported ({_SUPPORTED})")
    if not evaluate:
        return "", end
    if name in env:
        if on_value is not None:
            on_value(name, env[name])
        return env[name], end
    if default is not None:
        return default, end
    if not strict:
        return text[start:end], end
    raise InterpolationError(f"environment variable {name} is not set (set it, or add it to .env beside the spec)")
