"""The libcloud provider's settings: which driver class, its constructor's arguments (``NAME_env`` read from
the environment), which values are secrets, and the settings that are ours (see the package notes)."""

from __future__ import annotations

import builtins
import difflib
import importlib
import os
from collections.abc import Mapping
from typing import Any

from cloudherd.providers.base import AuthError, InvalidRequestError, MissingDependencyError, UnknownProviderError
from cloudherd.providers.toolkit import first_line

DEFAULT_CONCURRENCY = 8
OURS = {"type", "driver", "args", "kwargs", "image", "size", "location", "create_options", "tagging", "concurrency",
        "pool", "bulk", "cloud_init", "ssh_user", "project_id"}
TAGGINGS = ("auto", "metadata", "tags", "name")
SECRET_WORDS = ("key", "secret", "password", "passwd", "token", "credential")


def driver_class(providers: Any, name: str) -> Any:
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise UnknownProviderError(f"libcloud driver class {name!r} cannot be imported: {exc}") from exc
        return cls
    known = {str(k).lower(): k for k in providers.DRIVERS}
    key = known.get(name.lower())
    if key is None:
        close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see libcloud's list of compute providers)"
        raise UnknownProviderError(f"unknown libcloud compute driver {name!r}{hint}")
    try:
        return providers.get_driver(key)
    except ImportError as exc:
        raise MissingDependencyError(f"libcloud driver {name!r} needs a package that is not installed: {exc}") from exc
    except Exception as exc:  # libcloud raises a bare Exception for retired providers
        raise UnknownProviderError(f"libcloud driver {name!r} cannot be used: {first_line(exc)}") from exc


def resolve_env(settings: Mapping[str, Any]) -> dict[str, Any]:
    resolved = {k: v for k, v in settings.items() if not k.endswith("_env")}
    for key, var in settings.items():
        if key.endswith("_env"):
            name = key[: -len("_env")]
            value = os.environ.get(str(var))
            if value is None:
                raise AuthError(f"libcloud provider: setting {name} comes from ${var}, which is not set")
            resolved[name] = value
    return resolved


def constructor_arguments(settings: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    kwargs = {k: v for k, v in settings.items() if k not in OURS and k not in ("key", "secret")}
    extra = settings.get("kwargs") or {}
    if not isinstance(extra, Mapping):
        raise InvalidRequestError("libcloud provider: kwargs must be a mapping")
    kwargs.update(extra)
    if settings.get("args") is not None:
        args = settings["args"]
        if not isinstance(args, list | tuple):
            raise InvalidRequestError("libcloud provider: args must be a list")
        positional = builtins.list(args)
        for name in ("key", "secret"):
            if name in settings:
                kwargs[name] = settings[name]
        return positional, kwargs
    positional = []
    if "key" in settings:
        positional.append(settings["key"])
        if "secret" in settings:
            positional.append(settings["secret"])
    elif "secret" in settings:
        kwargs["secret"] = settings["secret"]
    return positional, kwargs


def secret_values(settings: Mapping[str, Any]) -> builtins.list[str]:
    """Every value that may be a credential: masked in messages (longest first)."""
    found: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, str | int) and not isinstance(value, bool) and len(str(value)) >= 4:
            found.add(str(value))

    for key, value in settings.items():
        lowered = key.lower()
        if key == "args" and isinstance(value, list | tuple):
            for item in value:
                add(item)
        elif key == "kwargs" and isinstance(value, Mapping):
            for inner_key, inner in value.items():
                if any(w in str(inner_key).lower() for w in SECRET_WORDS):
                    add(inner)
        elif any(w in lowered for w in SECRET_WORDS):
            add(value)
    return sorted(found, key=len, reverse=True)


def positive_int(provider: str, name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise InvalidRequestError(f"libcloud provider {provider}: {name} must be a whole number ≥ 1, not {value!r}")
    return number


def opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
