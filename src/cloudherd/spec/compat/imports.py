"""Occopus' ``!yaml_import`` and ``!text_import``: a file pulled into the YAML where the tag stands.

Occopus' node definitions keep their cloud-init files apart (``context_template: !yaml_import {url:
file://cloud_init_x.yaml}``), read relative to the including file.  Only ``file://`` is followed, only
below the folder of the first file (no ``..`` out of it, no absolute path elsewhere, no link that leads
out), at most :data:`MAX_DEPTH` imports deep and :data:`MAX_IMPORTS` in all, each file bounded like a
spec's own files.  A file that came over the network has no folder: its imports are refused, located.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cloudherd.errors import SpecError
from cloudherd.spec.compat import line_of
from cloudherd.spec.files import Budget, Where, read_text, spec_error

IMPORT_TAGS = ("!yaml_import", "!text_import")
MAX_DEPTH = 4  # an import that imports… a real tutorial goes one deep
MAX_IMPORTS = 200  # the largest Occopus tutorial imports 6


def tag_of(node: Any) -> str | None:
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", None)
    return str(value) if value in IMPORT_TAGS else None


def resolve(tree: Any, display: str, base: Path | None, *, budget: Budget | None = None) -> Any:
    """``tree`` with every import replaced by what it names (parsed YAML, or text)."""
    state = _State(root=Path(os.path.realpath(base)) if base is not None else None, budget=budget or Budget())
    return _walk(tree, display, base, state, depth=0)


class _State:
    def __init__(self, root: Path | None, budget: Budget) -> None:
        self.root = root
        self.budget = budget
        self.count = 0


def _walk(node: Any, display: str, folder: Path | None, state: _State, depth: int) -> Any:
    if isinstance(node, CommentedMap):
        for key in list(node):
            value = node[key]
            if tag_of(value):
                node[key] = _load(value, display, line_of(node, key), str(key), folder, state, depth)
            else:
                node[key] = _walk(value, display, folder, state, depth)
    elif isinstance(node, CommentedSeq):
        for index, value in enumerate(node):
            if tag_of(value):
                node[index] = _load(value, display, line_of(node, index), f"[{index}]", folder, state, depth)
            else:
                node[index] = _walk(value, display, folder, state, depth)
    return node


def _load(node: Any, display: str, line: int | None, key: str, folder: Path | None, state: _State,
          depth: int) -> Any:
    tag = tag_of(node)
    where = Where(display, line, key)
    if not isinstance(node, CommentedMap) or set(node) != {"url"} or not isinstance(node["url"], str):
        raise where.error(f"{tag} takes one key, url (url: file://NAME)")
    url = node["url"]
    if not url.startswith("file://"):
        raise where.error(f"{tag} {url}: only file:// URLs are read (a file beside this one)")
    if folder is None or state.root is None:
        raise where.error(f"{tag} {url}: this file came without its folder, so nothing can be imported; "
                          "put the imported file's content in its place")
    state.count += 1
    if state.count > MAX_IMPORTS:
        raise where.error(f"more than {MAX_IMPORTS} imports")
    if depth >= MAX_DEPTH:
        raise where.error(f"{tag} {url}: imports nest deeper than {MAX_DEPTH}")
    name = url[len("file://"):]
    target = Path(os.path.realpath(folder / name))
    if target != state.root and state.root not in target.parents:
        raise where.error(f"{tag} {url}: outside the folder {state.root} (imports stay in the files' own folder tree)")
    if not target.is_file():
        raise where.error(f"{tag} {url}: no such file ({target})")
    text = read_text(target, where, shown=str(target), budget=state.budget, yaml=tag == "!yaml_import")
    if tag == "!text_import":
        return text
    from cloudherd.spec.yamlsafe import parse_yaml

    try:
        tree = parse_yaml(text, str(target), extra_tags=IMPORT_TAGS)
    except SpecError as exc:
        raise spec_error(display, line, key, f"{tag} {url}: {exc}") from None
    return _walk(tree, str(target), target.parent, state, depth + 1)


def refuse(tree: Any, display: str, why: str) -> None:
    """A located error at the first import in ``tree`` (a format that has none)."""
    def find(node: Any, path: tuple[str | int, ...]) -> None:
        items = node.items() if isinstance(node, CommentedMap) else enumerate(node) \
            if isinstance(node, CommentedSeq) else ()
        for key, value in items:
            tag = tag_of(value)
            if tag:
                raise spec_error(display, line_of(tree, *path, key), str(key), f"{tag}: {why}")
            find(value, (*path, key))
    find(tree, ())
