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
    """A group read back in OGC's layout keys (``runs-on``, ``remote-path``…)."""
    from cloudherd.spec.compat.ogc import layout_facts

    facts = layout_facts(loaded.spec, name)
    facts.pop("name")
    values = {key.replace("_", "-"): value for key, value in facts.items() if value not in (None, [], {})}
    return {**values, "scale": facts["scale"]}
