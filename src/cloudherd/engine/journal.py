"""The journal: every mutating cloud call is an intent committed before the call and closed after.

Why: a process can die (SIGKILL, power loss) between asking a cloud for machines and writing down
what it got.  Each create tags its instances with the intent's id, so whatever the cloud made can
always be found again: :func:`resolve` lists by that tag, adopts what exists into the node rows the
intent was for, terminates what is surplus, and closes the intent.  Terminations are journaled too,
and simply re-issued (terminate is idempotent).  Rollback reads the journal, so it undoes exactly what
a run made — never "everything with the tag".

A cloud's listing can lag its creates (EC2's DescribeInstances misses an instance for seconds after
RunInstances): an empty answer for a create intent younger than the provider's ``listing_lag`` (a provider
entry's ``settle_window``) is not believed — the intent stays open and the next command looks again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cloudherd.engine.context import Providers
from cloudherd.engine.events import EventSink, ProgressEvent, emit
from cloudherd.engine.locks import check_fence
from cloudherd.errors import ApplyFailed, CloudherdError
from cloudherd.lifecycle import InfraState, NodeState
from cloudherd.providers.base import TAG_INTENT, CreateRequest, Instance, Provider
from cloudherd.providers.wrapper import ProviderWrapper
from cloudherd.state.models import Infrastructure, Intent, Node, new_id
from cloudherd.state.repo import Store


def _assign(rows: Sequence[Node], instances: Sequence[Instance],
            ssh_user: str | None) -> tuple[list[tuple[str, dict[str, Any]]], list[Instance], list[Node]]:
    """Match instances to node rows (by name, then in order): (row updates, surplus instances, rows left)."""
    by_name = {i.name: i for i in instances}
    names = {r.name for r in rows}
    spare = [i for i in instances if i.name not in names]  # providers that cannot name
    updates, left = [], []
    used: set[str] = set()
    for row in rows:
        instance = by_name.get(row.name) or (spare.pop(0) if spare else None)
        if instance is None:
            left.append(row)
            continue
        used.add(instance.id)
        updates.append((row.id, {
            "provider_id": instance.id, "state": NodeState.BOOTING, "address": instance.address,
            "private_address": instance.private_address, "port": instance.port,
            "ssh_user": instance.ssh_user or ssh_user, "host_key": instance.host_key, "workdir": instance.workdir,
            "reason": None,
        }))
    surplus = [i for i in instances if i.id not in used]
    return updates, surplus, left


def _pins(rows: Sequence[Node], instances: Sequence[Instance],
          updates: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str, str]]:
    from cloudherd.remote.ssh import fingerprint  # SSH's library only when there are keys to pin

    return [(node_id, fields["host_key"], fingerprint(fields["host_key"]), "provider")
            for node_id, fields in updates if fields.get("host_key")]


async def create(
    store: Store, infra: Infrastructure, provider: Provider, rows: Sequence[Node], request: CreateRequest,
    ssh_user: str | None, sink: EventSink | None = None, *, run_intents: list[str] | None = None,
) -> list[Instance]:
    """Create instances for ``rows`` under a journaled intent; the rows get what was made."""
    check_fence(store)
    intent_id = new_id()
    request = dataclasses.replace(request, tags={**request.tags, TAG_INTENT: intent_id})
    store.open_intent(infra.id, provider.name, "create", group_name=rows[0].group_name if rows else None,
                      count=request.count, token=request.token, tags=dict(request.tags),
                      node_ids=[r.id for r in rows], intent_id=intent_id)
    if run_intents is not None:
        run_intents.append(intent_id)
    try:
        instances = await provider.create(request)
    except BaseException as exc:
        # the call may have made some before failing: undo exactly those, then close the intent
        with contextlib.suppress(CloudherdError):
            made = await provider.list({TAG_INTENT: intent_id})
            if made:
                await provider.terminate([i.id for i in made])
            store.close_intent(intent_id, "failed", outcome=str(exc)[:500] or exc.__class__.__name__)
        raise
    updates, surplus, left = _assign(rows, instances, ssh_user)
    if surplus:  # more than asked: never keep what nobody will track
        await provider.terminate([i.id for i in surplus])
    store.close_intent(intent_id, "done", outcome=f"made {len(instances)}",
                       provider_ids=[i.id for i in instances],
                       node_updates=[*updates, *((r.id, {"state": NodeState.FAILED,
                                                           "reason": "the provider made fewer instances than asked"})
                                                 for r in left)])
    store.pin_host_keys(infra.id, _pins(rows, instances, updates))
    for row in rows:
        for node_id, fields in updates:
            if node_id == row.id:
                emit(sink, ProgressEvent("node", f"created at {fields['address']}", node=row.name,
                                         group=row.group_name, state=NodeState.BOOTING))
    if left:
        raise ApplyFailed(f"the provider made {len(rows) - len(left)} of {len(rows)} instances")
    return instances


async def terminate(store: Store, infra: Infrastructure, provider: Provider, ids: Sequence[str],
                    nodes: Sequence[Node]) -> None:
    """Terminate ``ids`` under a journaled intent; the nodes are marked terminating with its opening (so that
    no one who lists the machines meanwhile calls them dead, over the reason they were retired for) and
    terminated with its close."""
    check_fence(store)
    intent = store.open_intent(infra.id, provider.name, "terminate", count=len(ids), provider_ids=list(ids),
                               node_ids=[n.id for n in nodes],
                               node_updates=[(n.id, {"state": NodeState.TERMINATING}) for n in nodes])
    await provider.terminate(list(ids))
    store.close_intent(intent.id, "done", outcome=f"terminated {len(ids)}",
                       node_updates=[(n.id, {"state": NodeState.TERMINATED}) for n in nodes])


async def resolve(store: Store, infra: Infrastructure, providers: Providers, sink: EventSink | None = None) -> int:
    """Settle the infrastructure's open intents (left by a crash); returns how many were settled."""
    settled = 0
    for intent in store.open_intents(infra.id):
        try:
            provider = providers.get(intent.provider)
            if intent.kind == "create":
                message = await _resolve_create(store, infra, provider, intent)
            else:
                message = await _resolve_terminate(store, infra, provider, intent)
        except CloudherdError as exc:  # the cloud cannot say now: leave it open, try next time
            emit(sink, ProgressEvent("error", f"journal: intent {intent.id} still open: {exc}"))
            continue
        if message is None:  # too young to believe an empty listing: left open, tried next time
            emit(sink, ProgressEvent("info", f"journal: create intent {intent.id} left open: nothing listed yet"))
            continue
        settled += 1
        store.add_event(infra.id, "journal", f"intent {intent.id} ({intent.kind}): {message}")
        emit(sink, ProgressEvent("info", f"journal: {intent.kind} interrupted earlier: {message}"))
    return settled


async def _resolve_create(store: Store, infra: Infrastructure, provider: Provider, intent: Intent) -> str | None:
    """Adopt, terminate as surplus, or call never made what the intent's tag lists; None (left open) when
    nothing is listed yet and the intent is younger than the provider's listing lag."""
    found = await provider.list({TAG_INTENT: intent.id})
    if not found and _too_young(store, infra, provider, intent):
        return None
    nodes = store.nodes(infra.id)
    # a retried create (the same request token) may have handed these to another intent's rows: theirs now
    tracked = {n.provider_id for n in nodes if n.provider_id and n.state != NodeState.TERMINATED}
    elsewhere = [i for i in found if i.id in tracked]
    found = [i for i in found if i.id not in tracked]
    wanted = set(intent.node_ids.get("nodes", []))
    rows = [n for n in nodes if n.id in wanted and n.state == NodeState.PENDING]
    ssh_user = next((n.ssh_user for n in nodes if n.ssh_user), None)
    updates, surplus, left = _assign(rows, [i for i in found if i.alive], ssh_user)
    surplus += [i for i in found if not i.alive]
    if surplus:
        await provider.terminate([i.id for i in surplus])
    message = f"adopted {len(updates)}, terminated {len(surplus)} surplus, {len(left)} never made"
    if elsewhere:
        message += f", {len(elsewhere)} already tracked"
        found += elsewhere
    store.close_intent(intent.id, "resolved", outcome=message, provider_ids=[i.id for i in found],
                       node_updates=updates)
    store.pin_host_keys(infra.id, _pins(rows, found, updates))
    return message


def _too_young(store: Store, infra: Infrastructure, provider: Provider, intent: Intent) -> bool:
    """Whether an empty listing for ``intent`` may just be the cloud's listing lag.  Never during ``down``:
    its sweep by the infrastructure's tag is the later look, and an intent left open for good would hide
    what it made from ``gc`` (which spares the machines of intents in flight)."""
    driver = provider.driver if isinstance(provider, ProviderWrapper) else provider
    created = intent.created_at
    if (datetime.now(UTC) - created).total_seconds() >= driver.listing_lag:
        return False
    return store.infrastructure(infra.id).state != InfraState.DESTROYING


async def _resolve_terminate(store: Store, infra: Infrastructure, provider: Provider, intent: Intent) -> str:
    ids = list(intent.provider_ids.get("ids", []))
    if ids:
        await provider.terminate(ids)
    wanted = set(intent.node_ids.get("nodes", []))
    nodes = [n for n in store.nodes(infra.id) if n.id in wanted]
    store.close_intent(intent.id, "resolved", outcome=f"terminated {len(ids)} again",
                       node_updates=[(n.id, {"state": NodeState.TERMINATED}) for n in nodes])
    return f"terminated {len(ids)} again"


async def undo(store: Store, infra: Infrastructure, providers: Providers, intent_ids: Sequence[str]) -> int:
    """Terminate exactly what the given create intents made (recorded ids plus anything carrying their
    tag); mark their nodes terminated.  Returns how many instances were terminated."""
    intents = {i.id: i for i in store.intents(infra.id)}
    nodes = store.nodes(infra.id)
    total = 0
    for intent_id in intent_ids:
        intent = intents.get(intent_id)
        if intent is None or intent.kind != "create":
            continue
        provider = providers.get(intent.provider)
        ids = set(intent.provider_ids.get("ids", []))
        with contextlib.suppress(CloudherdError):
            ids |= {i.id for i in await provider.list({TAG_INTENT: intent_id})}
        wanted = set(intent.node_ids.get("nodes", []))
        mine = [n for n in nodes if n.id in wanted and n.state != NodeState.TERMINATED]
        if ids:
            await terminate(store, infra, provider, sorted(ids), mine)
            total += len(ids)
        if intent.state == "open":
            store.close_intent(intent_id, "failed", outcome="rolled back")
        for node in mine:
            store.update_node(node.id, state=NodeState.TERMINATED, reason="rolled back")
    return total
