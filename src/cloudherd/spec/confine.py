"""Specs that arrive over the network: what they may reach on the server that loads them.

A spec sent to ``cloudherd serve`` is written by whoever holds a token, and loaded (and later re-read by the
manager) on the server.  Loaded *within* a :class:`Confinement`, it may use only what the server offers and
what its sender sent:

- **clouds**: only the providers of the server's configuration, by name, with the server's settings; a
  spec's own ``providers:`` (which could ask for ``isolation: none`` or a share of ``/``) is refused, and so
  is a group or a ``placement:`` place naming any other cloud (a bare type such as ``local`` would be made
  with defaults, not the server's settings).  Provider settings (``shared:`` folders among them) come from
  nowhere else: a group has no settings of its provider's, so the only shares a network spec's nodes get are
  those its operator gave (the configuration's, or ``CLOUDHERD_LOCAL_SHARED`` in the server's environment),
  inside which cloudherd's data folder stays hidden;
- **files**: every script, teardown or ``user_data`` file resolves inside the spec's own folder (its
  upload or bundle), after links; ``ssh.key`` (a key file on the server) is refused;
- **environment**: ``${VAR}`` and a template's ``env`` see the bundle's ``.env`` only, never the server's
  process environment (its database URL, its credentials).

The confinement is kept with the infrastructure, so the manager's re-reads are confined the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudherd.spec.files import Where, spec_error


@dataclass(frozen=True)
class Confinement:
    """What a network spec may use: the server's clouds (name → settings, as in its configuration)."""

    providers: Mapping[str, Mapping[str, Any]]
    max_group_size: int | None = None  # the server's ceiling on any group's count / min / max (server.yml)

    def offered(self) -> str:
        return ", ".join(sorted(self.providers)) or "none"

    def as_record(self) -> dict[str, dict[str, Any]]:
        """What is stored with the infrastructure (and given back to :meth:`from_record`)."""
        return {name: dict(settings) for name, settings in self.providers.items()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> Confinement | None:
        return None if record is None else cls(providers={str(k): dict(v) for k, v in record.items()})


def refuse_keys(tree: Mapping[str, Any], within: Confinement, display: str, line_of: Any) -> None:
    """The keys a network spec may not hold: its own ``providers:`` and an ``ssh.key`` file on the server."""
    if "providers" in tree:
        raise spec_error(display, line_of(("providers",)), "providers",
                         f"a spec sent to a server uses the server's clouds: remove 'providers:' "
                         f"(offered: {within.offered()})")
    ssh = tree.get("ssh")
    if isinstance(ssh, Mapping) and "key" in ssh:
        raise spec_error(display, line_of(("ssh", "key")), "ssh.key",
                         "a spec sent to a server cannot name a key file on it: the server's key is used")
    groups = tree.get("groups")
    for name, group in (groups.items() if isinstance(groups, Mapping) else ()):
        login = group.get("ssh") if isinstance(group, Mapping) else None
        if isinstance(login, Mapping) and "key" in login:
            raise spec_error(display, line_of(("groups", name, "ssh", "key")), f"groups.{name}.ssh.key",
                             "a spec sent to a server cannot name a key file on it: the server's key is used")
        if isinstance(group, Mapping) and group.get("upload"):
            raise spec_error(display, line_of(("groups", name, "upload")), f"groups.{name}.upload",
                             "a spec sent to a server cannot copy a folder of the server's: send the files as "
                             "scripts")


def offered_providers(within: Confinement) -> dict[str, dict[str, Any]]:
    """The ``providers:`` a confined spec is validated with: the server's own."""
    return within.as_record()


def check_groups(groups: Mapping[str, Any], within: Confinement, display: str, line_of: Any) -> None:
    """Each group names a cloud the server offers, and so does each place of its ``placement:``: a bare type
    such as ``local`` or ``aws`` is a cloud of its own, made with no settings of the server's configuration
    (the server's ambient credentials, its default ``isolation`` and ``shared`` folders)."""
    for name, group in groups.items():
        _check_size(name, group, within, display, line_of)
        if group.provider not in within.providers:
            raise spec_error(display, line_of(("groups", name, "provider")) or line_of(("groups", name)),
                             f"groups.{name}.provider",
                             f"'{group.provider}' is not offered by this server (offered: {within.offered()})")
        for index, place in enumerate(group.placement):
            if place.provider not in within.providers:
                loc = ("groups", name, "placement", index)
                raise spec_error(display, line_of((*loc, "provider")) or line_of(loc) or line_of(("groups", name)),
                                 f"groups.{name}.placement.{index}.provider",
                                 f"'{place.provider}' is not offered by this server (offered: {within.offered()})")


def _check_size(name: str, group: Any, within: Confinement, display: str, line_of: Any) -> None:
    ceiling = within.max_group_size
    if ceiling is None:
        return
    for key in ("count", "min", "max"):
        value = getattr(group, key, None)
        if isinstance(value, int) and value > ceiling:
            spelled = ("scaling", key) if key != "count" and getattr(group, "scaling", None) is not None else (key,)
            where = line_of(("groups", name, *spelled)) or line_of(("groups", name))
            raise spec_error(display, where,
                             f"groups.{name}.{key}", f"{value} is more than this server lets a group have "
                                                     f"({ceiling}, its max_group_size)")


def check_inside(real: Path, root: Path, where: Where, entry: str) -> None:
    """A file a network spec names stays inside its bundle, links resolved."""
    if not real.is_relative_to(root):
        raise where.error(f"{entry}: outside the spec's bundle (a spec sent to a server reads only what was sent "
                          "with it)")
