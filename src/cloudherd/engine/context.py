"""What every engine step needs: the user's identity and key, providers by name, secret masking.

A node's environment and template context live in :mod:`cloudherd.engine.templates`."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cloudherd.paths import data_dir
from cloudherd.providers import Provider, make_provider
from cloudherd.spec import LoadedSpec
from cloudherd.spec.confine import Confinement
from cloudherd.spec.loader import load_spec_text

if TYPE_CHECKING:
    import asyncssh

    from cloudherd.state.models import Infrastructure, Node
    from cloudherd.state.records import InfraRecord
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
    from cloudherd.remote.keys import ensure_keypair  # SSH's library only for commands that log in

    path = Path(key_path).expanduser() if key_path else default_key_path()
    name = getpass.getuser()
    # a manager asks for it every pass: the key file's parse and the user's row are reused (per store) while the
    # key file stands as it was
    cache: dict[tuple[str, str, tuple[int, int] | None], Identity] = store.__dict__.setdefault("_identities", {})
    known = cache.get((str(path), name, _stamp(path)))
    if known is not None:
        return known
    key, public = ensure_keypair(path)
    user = store.ensure_user(name, public, str(path))
    identity = Identity(user.id, name, key, public, path)
    cache[(str(path), name, _stamp(path))] = identity
    return identity


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


def recorded_nodes(infra: Infrastructure) -> list[Node]:
    """The nodes read with the infrastructure (:meth:`Store.infrastructure` loads its groups and nodes in one
    read), in the order :meth:`Store.nodes` gives them: no second read for what the first one brought."""
    return sorted(infra.nodes, key=lambda n: (n.group_name, n.index))


def snapshot(infra: Infrastructure | InfraRecord) -> LoadedSpec:
    """The spec an infrastructure was made from, re-read with today's environment (scripts not re-read).

    A manager re-reads every infrastructure's spec each pass; parsing is most of a quiet pass's CPU, so a
    parse is reused while its inputs stand: the text, its path, the process environment and the ``.env``
    beside it (its size and time).  Each caller gets its own copy of the mutable parts."""
    path = Path(infra.spec_path)
    within = Confinement.from_record(infra.confined)
    key = (infra.spec_text, str(path), hash(frozenset(os.environ.items())), _stamp(path.parent / ".env"),
           json.dumps(infra.confined, sort_keys=True))
    parsed = _parsed.get(key)
    if parsed is None:
        parsed = load_spec_text(infra.spec_text, path, strict_env=False, read_scripts=False, within=within)
        if len(_parsed) >= _PARSED_MAX:
            _parsed.pop(next(iter(_parsed)))
        _parsed[key] = parsed
    return dataclasses.replace(parsed, env=dict(parsed.env), scripts={k: list(v) for k, v in parsed.scripts.items()},
                               teardown=dict(parsed.teardown), secrets=set(parsed.secrets))


_PARSED_MAX = 512  # specs kept parsed (a manager's infrastructures); the oldest goes first
_parsed: dict[tuple[str, str, int, tuple[int, int] | None, str], LoadedSpec] = {}


def _stamp(file: Path) -> tuple[int, int] | None:
    try:
        info = file.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


@dataclass
class Redactor:
    """Masks secret values (from ``${VAR}`` and ``.env`` entries named like secrets) in stored text."""

    secrets: set[str] = field(default_factory=set)

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "***")
        return text
