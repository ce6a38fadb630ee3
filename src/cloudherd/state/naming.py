"""Which infrastructure a user's reference names: the one rule, for the store and the lean reader alike."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from cloudherd.errors import UsageError
from cloudherd.lifecycle import InfraState


class _Named(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


def pick_infrastructure(ref: str, by_prefix: Sequence[_Named], by_name: Sequence[_Named]) -> str:
    """The id ``ref`` names, given the infrastructures whose id starts with it and those named it (an exact id
    is looked up before): a name means its active infrastructure, or, when all of that name are destroyed, the
    latest one (history).  A located error when none or several match."""
    active_names = [i for i in by_name if i.state != InfraState.DESTROYED]
    latest = sorted(by_name, key=lambda i: i.created_at)[-1:]
    candidates = {i.id: i for i in (*by_prefix, *(active_names or latest))}
    if len(candidates) == 1:
        return next(iter(candidates))
    if not candidates:
        raise UsageError(f"no infrastructure matches '{ref}' (see `cloudherd ls --all`)")
    listed = ", ".join(f"{i.id} ({i.name}, {i.state})" for i in candidates.values())
    raise UsageError(f"'{ref}' is ambiguous: {listed}; give more of the id")


def blank_reference() -> UsageError:
    return UsageError("give an infrastructure id, id prefix or name (see `cloudherd ls`)")
