"""Files written for the tools cloudherd replaces, read as they are: OGC layouts and Occopus descriptions.

Each reader turns the foreign file into a native spec (plain data, ``${VAR}`` left as written) and a map
from native key paths to the foreign file's lines, so that an error found in the native spec still
points at the line the user wrote.  Readers check what only they know (their own keys, node types,
resource types, dependency cycles) in the foreign file's own key names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cloudherd.errors import SpecError

FORMATS = ("native", "ogc", "occopus")


@dataclass
class Converted:
    """A foreign file as a native spec: the data, and native dotted paths → lines of the foreign file."""

    data: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how a key was read, where it is not plain (said by `convert`)
    # what loads but does not do all the file says: `convert` writes them as comments, `up` prints them
    warnings: list[SpecError] = field(default_factory=list)

    def line_for(self, dotted: str) -> int | None:
        """The foreign line of ``dotted`` or of its nearest parent that has one."""
        parts = dotted.replace("[", ".").replace("]", "").split(".")
        for cut in range(len(parts), 0, -1):
            line = self.lines.get(".".join(parts[:cut]))
            if line is not None:
                return line
        return None


def detect(tree: Any) -> str:
    """``ogc`` (top-level ``layouts``), ``occopus`` (``infra_name`` / a list of ``nodes``) or ``native``."""
    if isinstance(tree, Mapping):
        if "layouts" in tree and "groups" not in tree:
            return "ogc"
        if "infra_name" in tree or (isinstance(tree.get("nodes"), list) and "groups" not in tree):
            return "occopus"
    return "native"


def dotted(path: tuple[str | int, ...]) -> str:
    """A key path as messages show it: ``nodes[0].type``."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def line_of(tree: Any, *path: str | int) -> int | None:
    """The 1-based line of ``path`` in a ruamel tree (the key's line for mappings, the item's for lists)."""
    node, line = tree, None
    for step in path:
        if isinstance(node, CommentedMap) and step in node:
            position = node.lc.key(step) if node.lc.data and step in node.lc.data else None
            line = position[0] + 1 if position else (node.lc.line or 0) + 1
            node = node[step]
        elif isinstance(node, CommentedSeq) and isinstance(step, int) and 0 <= step < len(node):
            line = node.lc.item(step)[0] + 1
            node = node[step]
        else:
            break
    return line
