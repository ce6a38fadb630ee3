"""When autostop and autodown would act (``status``), and which of the manager's processes a stop suspends: the
part of :mod:`cloudherd.engine.idle` that reads only, kept apart so that ``status`` on the lean reader imports no
SQLAlchemy for it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cloudherd.lifecycle import Process
from cloudherd.times import as_utc

if TYPE_CHECKING:
    from cloudherd.spec import LoadedSpec
    from cloudherd.state.models import Infrastructure
    from cloudherd.state.reader import Reader
    from cloudherd.state.records import InfraRecord
    from cloudherd.state.repo import Store

# what a stop (a total budget's, autostop's) suspends, so that nothing of the manager's starts a machine again
HELD = (Process.LAUNCH, Process.REPLACE_UNHEALTHY, Process.HEALTH_CHECK, Process.POLICIES,
        Process.SCHEDULED_ACTIONS, Process.ROLLOUT)


def idle_deadlines(reads: Store | Reader, infra: Infrastructure | InfraRecord,
                   loaded: LoadedSpec) -> dict[str, datetime]:
    """When each rule would act if the infrastructure stays idle from now on."""
    since = idle_since(reads, infra)
    return {name: since + timedelta(seconds=rule.idle)
            for name, rule in (("autostop", loaded.spec.autostop), ("autodown", loaded.spec.autodown))
            if rule is not None and not done_by(infra, name)}


def idle_since(reads: Store | Reader, infra: Infrastructure | InfraRecord) -> datetime:
    """The latest of: when a pass last found it in use, its last action, its making."""
    moments = [as_utc(infra.created_at)]
    if infra.busy_at is not None:
        moments.append(as_utc(infra.busy_at))
    for action in reads.last_actions(infra.id).values():
        moments.append(as_utc(action.ended_at or action.started_at))
    return max(moments)


def done_by(infra: Infrastructure | InfraRecord, rule: str) -> bool:
    """Whether ``rule`` (``autostop``, ``budget``…) has stopped the infrastructure already: one of the processes it
    suspends says so, until resumed."""
    held = {p.value for p in HELD}
    return any(str(why).startswith(f"{rule}:") for g in infra.groups for p, why in (g.suspended or {}).items()
               if p in held)


def hold(store: Store, infra: Infrastructure, why: str) -> None:
    """A stop's suspension (a total budget's, autostop's, ``cloudherd stop``'s): every group's :data:`HELD`
    processes suspended with ``why``; a suspension already there keeps its own reason (the user's, another
    rule's)."""
    for group in infra.groups:
        held = {**{p.value: why for p in HELD}, **(group.suspended or {})}
        store.set_suspended(infra.id, group.name, held, f"{group.name}: suspended {', '.join(p.value for p in HELD)} "
                                                        f"({why})")
