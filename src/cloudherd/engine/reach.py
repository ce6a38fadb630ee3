"""Reaching an infrastructure's nodes: the login each node takes, and the host keys pinned for them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cloudherd.engine.context import Identity
from cloudherd.errors import UsageError
from cloudherd.remote.pool import ConnectionPool
from cloudherd.remote.ssh import Target, fingerprint
from cloudherd.state.models import Group, Infrastructure, Node
from cloudherd.state.repo import Store

if TYPE_CHECKING:
    import asyncssh


class Reach:
    """How to log in to an infrastructure's nodes, with the host keys pinned for them.

    The pin of a node is the key recorded in ``host_keys`` (first contact, or its provider's report);
    ``accept_new`` names nodes whose next key is taken as the new pin (``--accept-new-host-key``); ``groups``:
    the infrastructure's group rows as the caller read them (else they are read when a group's key is wanted);
    ``pins``: the pins as the caller just read them (else they are read).
    """

    def __init__(self, store: Store, infra: Infrastructure, identity: Identity,
                 accept_new: Collection[str] = (), groups: Sequence[Group] | None = None,
                 pins: dict[str, str] | None = None) -> None:
        self.store = store
        self.infra = infra
        self.identity = identity
        self.pins = dict(pins) if pins is not None else store.pins(infra.id)
        self.accept_new = set(accept_new)
        self._group_keys: dict[str, asyncssh.SSHKey | None] = {}
        self._key_paths: dict[str, str | None] = {g.name: (g.config or {}).get("ssh_key") for g in groups or ()}
        if self.accept_new:
            names = {key for n in store.nodes(infra.id) for key in (n.name, n.id)}
            unknown = sorted(self.accept_new - names)
            if unknown:
                raise UsageError(f"cannot accept a new host key for {', '.join(unknown)}: no such node in {infra.name}")

    def target(self, node: Node) -> Target:
        return Target(
            node.name, node.address or "", node.port, node.ssh_user or self.identity.user_name,
            host_key=self.pins.get(node.id) or node.host_key, node_id=node.id, workdir=node.workdir,
            accept_new_host_key=bool({node.name, node.id} & self.accept_new), key=self.group_key(node.group_name),
        )

    def group_key(self, group_name: str) -> asyncssh.SSHKey | None:
        """The private key of a group that has its own (``groups.NAME.ssh.key``), read once; None: ours."""
        if group_name not in self._group_keys:
            from cloudherd.remote.keys import ensure_keypair

            if group_name not in self._key_paths:  # every group's, read at once (again for a group new since)
                self._key_paths = {g.name: (g.config or {}).get("ssh_key")
                                   for g in self.store.infrastructure(self.infra.id).groups}
            path = self._key_paths.get(group_name)
            self._group_keys[group_name] = ensure_keypair(Path(path))[0] if path else None
        return self._group_keys[group_name]

    def record(self, pool: ConnectionPool) -> None:
        """Pin the keys nodes presented on first contact (or re-pin), all in one transaction."""
        rows = []
        for target, seen in pool.seen_host_keys.values():
            if not target.node_id or self.pins.get(target.node_id) == seen.public_key:
                continue
            source = "re-pinned" if target.accept_new_host_key else "first-contact"
            rows.append((target.node_id, seen.public_key, seen.fingerprint, source))
            self.pins[target.node_id] = seen.public_key
            if target.accept_new_host_key and target.host_key:
                self.store.add_event(
                    self.infra.id, "host-key",
                    f"{target.name}: host key re-pinned from {fingerprint(target.host_key)} to {seen.fingerprint}",
                    node_id=target.node_id,
                )
        self.store.pin_host_keys(self.infra.id, rows)
