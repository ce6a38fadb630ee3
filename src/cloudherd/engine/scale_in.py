"""Which of a group's nodes a shrink gives up, and which it may not: termination policies, protection, standby.

Why a module of its own: the same choice is made by ``plan``, by ``up`` and by the manager's passes (through
:func:`cloudherd.engine.diff.diff_groups`), and it is what a user reads to know which node goes.  The order, first
to last kept:

1. a node named by a request (``scale --victim``, Auto Scaling's TerminateInstanceInAutoScalingGroup) goes first;
2. by place: a group with a placement empties its last place first;
3. by the group's termination policies, each breaking the ties of the one before (AWS's rule), then the newest.

A protected node is never chosen by a shrink unless it is named (AWS: protection guards against scale-in, not
against replacement of a failed node nor against a user's own request); the group then stays above its size until
its protection is lifted.  A node in standby is out of the reckoning altogether: not counted, not replaced, not
chosen.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

HOUR = 3600.0


class Candidate(Protocol):
    """What the choice reads of a node (a state row, a record)."""

    @property
    def id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def release(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def protected(self) -> bool: ...


C = TypeVar("C", bound=Candidate)


def _policy_key(policy: str, node: Candidate, release: str | None, now: datetime) -> float:
    """Higher goes sooner under ``policy``."""
    if policy == "oldest":
        return -float(node.index)
    if policy == "oldest-release":
        return 1.0 if release is not None and node.release != release else 0.0
    if policy == "closest-to-next-hour":
        age = max(0.0, (now - node.created_at).total_seconds())
        return -(HOUR - age % HOUR)  # fewer seconds left of its billed hour: sooner
    return float(node.index)  # newest


def keep_order(nodes: Sequence[C], *, places: Sequence[str], policies: Sequence[str],
               victims: Collection[str] = (), release: str | None = None, now: datetime | None = None) -> list[C]:
    """``nodes`` in the order a group keeps them: the first ``count`` stay, the rest are the shrink's choice."""
    from cloudherd.times import utcnow

    moment = now or utcnow()
    rank = {name: i for i, name in enumerate(places)}

    def goes_sooner(node: Candidate) -> tuple[float, ...]:
        return (float(node.id in victims), float(rank.get(node.provider, len(places))),
                *(_policy_key(p, node, release, moment) for p in (*policies, "newest")))

    return sorted(nodes, key=goes_sooner)


def shrink_choice(ordered: Sequence[C], count: int, victims: Collection[str] = ()) -> list[C]:
    """The nodes of ``ordered`` (kept first) that a shrink to ``count`` ends: from the last kept, passing over
    protected ones unless named.  Fewer than asked when too many are protected."""
    surplus = max(0, len(ordered) - count)
    removable = [n for n in reversed(ordered) if not n.protected or n.id in victims]
    chosen = {n.id for n in removable[:surplus]}
    return [n for n in ordered if n.id in chosen]  # in the order kept, as the rest of the diff lists nodes
