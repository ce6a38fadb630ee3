"""A bounded round-trip YAML loader: line numbers kept, hostile documents refused early and located.

ruamel's round-trip loader keeps every key's line (``.lc``), which the error messages need, but it
happily composes an alias bomb (a few hundred bytes that expand to billions of values), documents
nested thousands deep (``RecursionError`` later), ``!!python/…`` and other tags, and recursive
aliases.  :class:`BoundedComposer` counts while it composes, so nothing large is ever built:

* values: every node counts one, every alias counts the size of what it expands to;
  more than :data:`MAX_VALUES` in a document is refused at the alias (or value) that crosses it;
* depth: nesting, counted through aliases too, is at most :data:`MAX_DEPTH`;
* an alias inside the collection its anchor names (a loop) is refused;
* only plain data tags: text, numbers, true/false, null, timestamps, lists, mappings, merge keys;
* integers have at most :data:`MAX_INT_DIGITS` digits (Python refuses to convert past 4300 anyway).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cloudherd.inputs import SURROGATE
from cloudherd.spec.files import check_text, spec_error

MAX_VALUES = 50_000  # a large real spec has a few thousand; ruamel composes ~20,000 a second
MAX_DEPTH = 100
MAX_INT_DIGITS = 40
_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp",
                                              "merge"))


def _shown_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class BoundedComposer(Composer):
    """ruamel's composer with running totals of values (aliases expanded) and depth, and a tag check."""

    extra_tags: frozenset[str] = frozenset()  # a reader's own tags (Occopus' imports), resolved by that reader

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False  # legal YAML; the warning would be a second stderr line
        self._values = 0
        self._measured: dict[int, tuple[Node, int, int]] = {}  # id(node) -> (node, values, height)

    def _refuse(self, message: str, event: Any) -> None:
        raise ComposerError(None, None, message, event.start_mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                measured = self._measured.get(id(target))
                if measured is None:
                    self._refuse(f"alias *{event.anchor} is inside the &{event.anchor} it names (a loop)", event)
                    raise AssertionError  # unreachable
                _, values, height = measured
                self._count(values, event, alias=True)
                if self.depth + height > MAX_DEPTH:
                    self._refuse(f"alias *{event.anchor} nests the spec deeper than {MAX_DEPTH} levels", event)
            return super().compose_node(parent, index)
        if self.depth + 1 > MAX_DEPTH:
            self._refuse(f"nested deeper than {MAX_DEPTH} levels", event)
        tag = getattr(event, "tag", None)
        if isinstance(event, ScalarEvent | CollectionStartEvent) and tag is not None and tag != "!" \
                and str(tag) not in ALLOWED_TAGS and str(tag) not in self.extra_tags:
            self._refuse(f"the YAML tag {_shown_tag(str(tag))} is not allowed in a spec "
                         "(only text, numbers, true/false, lists and mappings)", event)
        node = super().compose_node(parent, index)
        self._measure(node, event)
        return node

    def _count(self, values: int, event: Any, *, alias: bool) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            what = "aliases expand the spec to" if alias else "the spec has"
            self._refuse(f"{what} more than {MAX_VALUES} values (an alias bomb?)", event)

    def _measure(self, node: Node, event: Any) -> None:
        if isinstance(node, ScalarNode):
            values, height = 1, 1
            if isinstance(node.value, str) and SURROGATE.search(node.value):
                self._refuse("a string holds a lone surrogate (an escape such as \\ud800): it is no character "
                             "a script, a file or a node can hold", event)
            if str(node.tag) == _CORE + "int":
                digits = sum(c.isdigit() for c in node.value)
                if digits > MAX_INT_DIGITS:
                    self._refuse(f"a number with {digits} digits (at most {MAX_INT_DIGITS})", event)
        else:
            children: list[Node]
            if isinstance(node, MappingNode):
                children = [part for pair in node.value for part in pair]
            elif isinstance(node, SequenceNode):
                children = list(node.value)
            else:  # pragma: no cover - ruamel has no other node kinds
                children = []
            values, height = 1, 1
            for child in children:
                _, child_values, child_height = self._measured[id(child)]
                values += child_values
                height = max(height, child_height + 1)
        self._measured[id(node)] = (node, values, height)
        self._count(1, event, alias=False)


def parse_yaml(text: str, shown: str, *, extra_tags: tuple[str, ...] = ()) -> Any:
    """The round-trip tree of ``text`` (a spec or one of its YAML files), or a located SpecError.

    ``extra_tags`` are let through on mappings (and kept as their ``.tag``) for a reader that resolves them."""
    check_text(text, shown, yaml=True)
    yaml = YAML(typ="rt")
    composer: type[BoundedComposer] = BoundedComposer
    if extra_tags:
        composer = type("Composer", (BoundedComposer,), {"extra_tags": frozenset(extra_tags)})
    yaml.Composer = composer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, ComposerError) and exc.context is None and "found undefined alias" not in problem:
            raise spec_error(shown, line, "", problem) from None
        raise spec_error(shown, line, "", f"invalid YAML: {problem}") from None
    except YAMLError as exc:
        raise spec_error(shown, None, "", f"invalid YAML: {exc}") from None
    except RecursionError:  # belt and braces: the composer bounds depth well below Python's limit
        raise spec_error(shown, None, "", f"invalid YAML: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # a value the constructor cannot make (a date like 2024-02-31…)
        raise spec_error(shown, None, "", f"invalid YAML: {exc}") from None


def plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (for dumping and for readers' logic)."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    for kind in (str, int, float):  # ruamel's scalars (LiteralScalarString, ScalarFloat…) as Python's own
        if isinstance(node, kind):
            return kind(node)
    return node
