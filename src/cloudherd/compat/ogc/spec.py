"""``SpecLoader.load([files])`` as OGC 2.x had it: the files merged left to right, with their layouts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudherd.errors import UsageError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Layout:
    """One layout of a loaded spec: its OGC keys (``as_dict()``), and the files it came from (to launch it)."""

    name: str
    files: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> int:
        return int(self.values.get("scale", 1))

    @property
    def provider(self) -> str:
        return str(self.values.get("provider", "local"))

    @property
    def username(self) -> str | None:
        return self.values.get("username")

    @property
    def tags(self) -> list[str]:
        return list(self.values.get("tags") or [])

    def as_dict(self) -> dict[str, Any]:
        """OGC's layout keys, with ``name``; ``spec`` names the files (what ``actions.launch`` makes it from)."""
        return {**self.values, "name": self.name, "spec": list(self.files)}


@dataclass(frozen=True)
class Spec:
    name: str
    files: tuple[str, ...]
    layouts: list[Layout]

    def layout(self, name: str) -> Layout:
        for layout in self.layouts:
            if layout.name == name:
                return layout
        names = ", ".join(item.name for item in self.layouts)
        raise UsageError(f"no layout '{name}' in {self.name} (layouts: {names})")


class SpecLoader:
    """OGC's ``SpecLoader``: ``load`` reads and checks the files, as ``cloudherd validate`` does (a located error
    for a bad one), and merges them."""

    @classmethod
    def load(cls, specs: PathLike | Sequence[PathLike]) -> Spec:
        from cloudherd.spec.loader import load_specs

        files = tuple(os.fspath(Path(s).absolute()) for s in ([specs] if isinstance(specs, str | os.PathLike)
                                                               else specs))
        loaded = load_specs(list(files), format="ogc")
        layouts = [Layout(name, files, _ogc_values(loaded, name)) for name in loaded.spec.groups]
        return Spec(loaded.spec.name, files, layouts)


def _ogc_values(loaded: Any, name: str) -> dict[str, Any]:
    """A group read back in OGC's layout keys."""
    group = loaded.spec.groups[name]
    kind = loaded.spec.providers[group.provider].type if group.provider in loaded.spec.providers else group.provider
    values: dict[str, Any] = {"provider": {"gce": "google"}.get(kind, kind), "scale": group.count,
                              "runs-on": group.image, "instance-size": group.size_name,
                              "username": (group.ssh.user if group.ssh else None) or loaded.spec.ssh.user,
                              "scripts": group.scripts[0] if len(group.scripts) == 1 else list(group.scripts),
                              "tags": [k if v == "true" else f"{k}={v}" for k, v in group.tags.items()],
                              "artifacts": list(group.artifacts), "ports": [f"{p}:{p}" for p in group.ports]}
    if group.upload:
        values.update({"remote-path": group.upload[0].path, "include": list(group.upload[0].include),
                       "exclude": list(group.upload[0].exclude)})
    return values
