"""Files of other formats (OGC layouts, Occopus descriptions) as the native spec they mean.

:func:`convert` reads a file of any known format and gives the native YAML text (what ``convert``
prints, and what is stored for an ``up``) with the reader's record of lines, notes and warnings;
:func:`dump_yaml` writes a reader's data as that text, its notes and warnings as comments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from cloudherd.errors import SpecError
from cloudherd.spec.files import Budget, spec_error
from cloudherd.spec.yamlsafe import parse_yaml

NodeDefs = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None  # or a function: asked only when needed


def native_text(text: str, display: str, *, format: str | None = None, node_defs: NodeDefs = None,
                base: Path | None = None) -> str:
    """The native spec a file means, as YAML text (``${VAR}`` as written): the file itself when it is
    native, else its conversion (``convert`` prints this; it is also what is stored for an ``up``).
    ``base``: the file's folder, where Occopus' ``!yaml_import`` finds its files (None: none are read)."""
    return convert(text, display, format=format, node_defs=node_defs, base=base)[0]


def convert(text: str, display: str, *, format: str | None = None, node_defs: NodeDefs = None,
            base: Path | None = None, budget: Budget | None = None) -> tuple[str, Any]:
    """(native YAML text, the Converted record or None) for a spec file of any known format."""
    from cloudherd.spec import compat
    from cloudherd.spec.compat import imports

    if format is not None and format not in compat.FORMATS:
        raise spec_error(display, None, "", f"unknown format '{format}' (formats: {', '.join(compat.FORMATS)})")
    tree = foreign_tree(text, display, base, format=format)
    chosen = format or compat.detect(tree)
    if chosen != "occopus":
        imports.refuse(tree, display, "Occopus' import tag is read in Occopus files only")
    else:
        tree = imports.resolve(tree, display, base, budget=budget)
    if chosen == "native":
        return text, None
    if not isinstance(tree, CommentedMap):
        raise spec_error(display, 1, "", f"an {chosen} file is a mapping")
    if chosen == "ogc":
        from cloudherd.spec.compat import ogc

        converted = ogc.convert(tree, display, str(base) if base is not None else None)
    else:
        from cloudherd.spec.compat import occopus

        defs = node_defs() if callable(node_defs) else node_defs
        converted = occopus.convert(tree, display, defs or {})
    return dump_yaml(converted.data, f"converted from {chosen} ({display})", converted.notes,
                     converted.warnings), converted


def foreign_tree(text: str, display: str, base: Path | None, *, format: str | None = None) -> Any:
    """The file as a tree with lines: YAML, or an OGC ``ogc.toml`` (rendered with the environment first)."""
    from cloudherd.spec.compat import imports, ogc

    if format in (None, "ogc") and (display.endswith(".toml") or ogc.looks_like_toml(text)):
        from cloudherd.spec.files import environment

        env = environment(base if base is not None else Path(display).parent, None, display, Budget())
        return ogc.read_toml(text, display, env, os.getcwd())  # OGC's cwd: where it ran
    return parse_yaml(text, display, extra_tags=imports.IMPORT_TAGS)


def merged_files(paths: Sequence[str | os.PathLike[str]], *, format: str | None = None,
           budget: Budget | None = None) -> tuple[str, Any]:
    """(native YAML text, the Converted record) of several OGC files merged left to right."""
    from cloudherd.spec import compat
    from cloudherd.spec.compat import ogc
    from cloudherd.spec.files import Where, read_text

    if not paths:
        raise spec_error("(no spec)", None, "", "give at least one spec file")
    trees = []
    for path in paths:
        display = str(path)
        text = read_text(Path(path), Where(display), budget=budget, yaml=True)
        tree = foreign_tree(text, display, Path(path).parent, format=format)
        if (format or compat.detect(tree)) != "ogc":
            raise spec_error(display, 1, "", "only OGC layout files merge: give one native or Occopus spec")
        trees.append((tree, display))
    shown = " + ".join(str(p) for p in paths)
    converted = ogc.convert(ogc.merge(trees), shown, str(Path(paths[0]).parent))
    return dump_yaml(converted.data, f"merged from OGC files {shown}", converted.notes, converted.warnings), converted


def dump_yaml(data: Any, origin: str, notes: list[str], warnings: Sequence[SpecError] = ()) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    setattr(yaml, "sort_base_mapping_type_on_output", False)  # noqa: B010 - keep the keys in the order written

    def text(representer: Any, value: str) -> Any:  # a script or a cloud-config reads as written: a | block
        block = "\n" in value and not value.startswith((" ", "\t")) and "\t" not in value \
            and all(line == line.rstrip() for line in value.splitlines())
        return representer.represent_scalar("tag:yaml.org,2002:str", value, style="|" if block else None)

    yaml.representer.add_representer(str, text)
    stream = io.StringIO()
    stream.write(f"# {origin}\n")
    for note in notes:
        stream.write(f"# note: {note}\n")
    for warning in warnings:
        stream.write(f"# warning: {warning}\n")
    yaml.dump(data, stream)
    return stream.getvalue()
