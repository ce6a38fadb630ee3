"""What every engine step needs: the user's identity and key, providers by name, secret masking,
and the template context of a node."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from cloudherd.errors import DeployError
from cloudherd.lifecycle import GONE_NODE_STATES
from cloudherd.paths import data_dir
from cloudherd.providers import Provider, make_provider
from cloudherd.remote.keys import ensure_keypair
from cloudherd.spec import LoadedSpec
from cloudherd.spec.loader import load_spec_text
from cloudherd.state.models import Infrastructure, Node
from cloudherd.state.repo import Store


@dataclass
class Identity:
    user_id: str
    user_name: str
    key: asyncssh.SSHKey
    public_key: str
    key_path: Path


def default_key_path() -> Path:
    return data_dir() / "keys" / "id_ed25519"


def ensure_identity(store: Store, key_path: str | os.PathLike[str] | None = None) -> Identity:
    """The current user's row and key pair, made on first use."""
    path = Path(key_path).expanduser() if key_path else default_key_path()
    key, public = ensure_keypair(path)
    name = getpass.getuser()
    user = store.ensure_user(name, public, str(path))
    return Identity(user.id, name, key, public, path)


class Providers:
    """Provider objects by name for one run, made once each and closed together."""

    def __init__(self, loaded: LoadedSpec) -> None:
        self._spec = loaded.spec
        self._made: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._made:
            config = self._spec.providers.get(name)
            if config is not None:
                self._made[name] = make_provider(name, config.type, config.model_extra or {})
            else:
                self._made[name] = make_provider(name, name, {})
        return self._made[name]

    async def close(self) -> None:
        for provider in self._made.values():
            await provider.close()


def snapshot(infra: Infrastructure) -> LoadedSpec:
    """The spec an infrastructure was made from, re-read with today's environment (scripts not re-read)."""
    return load_spec_text(infra.spec_text, Path(infra.spec_path), strict_env=False, read_scripts=False)


@dataclass
class Redactor:
    """Masks secret values (from ``${VAR}`` and ``.env`` entries named like secrets) in stored text."""

    secrets: set[str] = field(default_factory=set)

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "***")
        return text


def node_env(node: Node, group_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a node's scripts, teardown and exec commands see: its group's ``env`` and who it is.

    One function for every caller: ``plan`` hashes this environment into script digests and ``up``
    compares them, so two builders that drifted apart would make ``plan`` report wrong re-runs.
    """
    return {**(group_env or {}), "CLOUDHERD_NODE": node.name, "CLOUDHERD_GROUP": node.group_name,
            "CLOUDHERD_INFRA": node.infrastructure_id}


def node_view(node: Node) -> dict[str, Any]:
    return {
        "id": node.id, "name": node.name, "group": node.group_name, "index": node.index,
        "address": node.address, "private_address": node.private_address or node.address,
        "port": node.port, "provider": node.provider, "provider_id": node.provider_id,
    }


def template_context(
    node: Node, nodes: Iterable[Node], infra: Infrastructure, variables: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    by_group: dict[str, list[dict[str, Any]]] = {}
    for other in nodes:
        if other.state in GONE_NODE_STATES:
            continue
        by_group.setdefault(other.group_name, []).append(node_view(other))

    def members(group: str) -> list[dict[str, Any]]:
        if group not in by_group:
            known = ", ".join(sorted(by_group)) or "none"
            raise DeployError(f"no group '{group}' with live nodes (groups: {known})")
        return by_group[group]

    def getip(group: str) -> str:
        """The address of the group's first node (Occopus's getip)."""
        return str(members(group)[0]["address"])

    def getipall(group: str) -> list[str]:
        """Every address in the group, in node order."""
        return [str(n["address"]) for n in members(group)]

    def getprivip(group: str) -> str:
        """The private address of the group's first node (its address where the cloud has no private one)."""
        return str(members(group)[0]["private_address"])

    return {
        "node": node_view(node), "nodes": by_group, "infra": {"id": infra.id, "name": infra.name},
        "variables": dict(variables), "env": dict(env),
        "getip": getip, "getipall": getipall, "getprivip": getprivip,
    }
