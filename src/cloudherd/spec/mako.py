"""Mako templates (OGC's scripts) as Jinja templates run in cloudherd's sandbox.

Why translate instead of running Mako: Mako compiles a template to Python and runs it, so a script sent to
``serve`` (or stored by one user and rendered by another's manager) could run any code on the server.
Mako's own lexer reads the template (its syntax errors, with their lines, are Mako's), and each construct
becomes its Jinja twin: ``${expr | h}`` → ``{{ (expr)|e }}``, ``% for …:`` / ``% endfor`` →
``{% for … %}`` / ``{% endfor %}``, ``<% name = expr %>`` → ``{% set name = expr %}``, ``<%def>`` → a macro,
``<%namespace file=…>`` → the file's defs as that namespace, ``<%include>`` → the file rendered there.
Python that is not an expression or an assignment (imports, ``while``, statements with effects) is a
located error: the sandbox runs expressions only.  Lines are kept (a Jinja comment carries the line breaks
a construct consumed), so a render error names the script's own line.

The template's first line binds OGC's names (``node``, ``nodes``, ``db``, ``session``) from the ``ogc``
helper of the template context, given the layouts' facts (:func:`translate`'s ``layouts``).
"""

from __future__ import annotations

import ast
import json
import os
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudherd.errors import SpecError

if TYPE_CHECKING:
    from cloudherd.spec.files import Budget
    from cloudherd.spec.model import Spec

ESCAPES = {"h": "|e", "x": "|e", "u": "|urlencode", "trim": "|trim", "n": "", "str": "|string",
           "unicode": "|string"}
MAX_FILES = 50  # namespace and include files read for one script

Reader = Callable[[str, str], str | None]  # (name as written, folder) -> the file's text, None: not there


class _Out:
    """Jinja source being written, and the Mako line it has reached."""

    def __init__(self, flat: bool) -> None:
        self.parts: list[str] = []
        self.line = 1
        self.flat = flat  # a macro hoisted to the first line: line breaks written as {{ "\n" }}

    def to(self, line: int) -> None:
        if not self.flat and line > self.line:
            self.parts.append("{#" + "\n" * (line - self.line) + "#}")
            self.line = line

    def text(self, text: str) -> None:
        if self.flat:
            for index, piece in enumerate(text.split("\n")):
                if index:
                    self.parts.append('{{ "\\n" }}')
                if piece:
                    self.parts.append(_raw(piece))
            return
        if text:
            self.parts.append(_raw(text))
            self.line += text.count("\n")

    def code(self, code: str) -> None:
        self.parts.append(code)


def _raw(text: str) -> str:
    return "{% raw %}" + text + "{% endraw %}" if any(c in text for c in "{}#%") else text


class Translator:
    """One script's translation: ``source`` names it in messages, ``folder`` is where it lies (for lookups)."""

    def __init__(self, source: str, folder: str, read: Reader, lookup: Sequence[str]) -> None:
        self.source = source
        self.folder = folder
        self.read = read
        self.lookup = list(lookup)
        self.prelude: list[str] = []  # macros of namespaces, includes and the script's own defs
        self.files = 0

    def fail(self, message: str, line: int | None, source: str | None = None) -> SpecError:
        return SpecError(source or self.source, line, "", f"template error: {message}")

    def parse(self, text: str, source: str) -> Any:
        from mako import exceptions
        from mako.lexer import Lexer

        try:
            return Lexer(text).parse()
        except exceptions.MakoException as exc:
            line = getattr(exc, "lineno", None)
            message = str(exc).split(" at line:")[0]
            raise self.fail(message, line, source) from None

    def run(self, text: str, layouts: Mapping[str, Any]) -> str:
        tree = self.parse(text, self.source)
        body = _Out(flat=False)
        self.nodes(tree.nodes, body, self.source, prefix="")
        head = "{% set node, nodes, db, session = ogc(" + json.dumps(layouts, sort_keys=True) + ") %}"
        return head + "".join(self.prelude) + "".join(body.parts)

    # -- nodes ---------------------------------------------------------------------------------------

    def nodes(self, nodes: Sequence[Any], out: _Out, source: str, prefix: str) -> None:
        for node in nodes:
            self.node(node, out, source, prefix)

    def node(self, node: Any, out: _Out, source: str, prefix: str) -> None:
        from mako import parsetree as p

        out.to(node.lineno)
        if isinstance(node, p.Text):
            out.text(node.content)
        elif isinstance(node, p.Expression):
            out.code("{{ (" + self.checked(node.text, node.lineno, source) + ")"
                     + self.escapes(node.escapes, node.lineno, source) + " }}")
        elif isinstance(node, p.ControlLine):
            out.code(self.control(node, source))
        elif isinstance(node, p.Comment):
            pass  # a ## line or a <%doc>: the next node's line brings the breaks it took
        elif isinstance(node, p.Code):
            if node.ismodule:
                raise self.fail("<%! %> module code (imports) does not run in cloudherd's sandbox", node.lineno,
                                source)
            out.code(self.code(node.text, node.lineno, source))
        elif isinstance(node, p.DefTag):
            self.define(node, source, prefix)  # hoisted (Mako's defs are callable before they are written)
        elif isinstance(node, p.NamespaceTag):
            self.namespace(node, source)
        elif isinstance(node, p.IncludeTag):
            name = self.include(node, source)
            out.code("{{ " + name + "() }}")
        elif isinstance(node, p.TextTag):
            for inner in node.nodes:
                out.to(inner.lineno)
                out.text(inner.content if isinstance(inner, p.Text) else "")
        elif isinstance(node, p.PageTag) and not node.attributes:
            pass
        else:
            keyword = getattr(node, "keyword", type(node).__name__)
            raise self.fail(f"<%{keyword}> is not supported (cloudherd reads Mako's expressions, control lines, "
                            f"defs, namespaces and includes)", node.lineno, source)

    def expression(self, text: str, line: int, source: str) -> str:
        text = text.strip()
        try:
            ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise self.fail(f"not a Python expression: {text} ({exc.msg})", line, source) from None
        # Python's identity tests on None are Jinja's test named none
        return re.sub(r"\bis(\s+not)?\s+None\b", lambda m: "is" + (" not" if m.group(1) else "") + " none", text)

    def escapes(self, escapes: str, line: int, source: str) -> str:
        out = ""
        for name in (e.strip() for e in (escapes or "").split(",") if e.strip()):
            if name not in ESCAPES:
                raise self.fail(f"unknown filter '{name}' (cloudherd knows: {', '.join(ESCAPES)})", line, source)
            out += ESCAPES[name]
        return out

    def control(self, node: Any, source: str) -> str:
        keyword, text = node.keyword, node.text.strip().rstrip(":").strip()
        if node.isend:
            if keyword not in ("for", "if"):
                raise self.fail(f"% end{keyword}: only for and if blocks run in the sandbox", node.lineno, source)
            return "{% end" + keyword + " %}"
        if keyword not in ("for", "if", "elif", "else"):
            raise self.fail(f"% {keyword}: only for / if / elif / else run in the sandbox", node.lineno, source)
        if keyword == "else":
            return "{% else %}"
        head = text[len(keyword):].strip()
        if keyword == "for":
            target, sep, iterable = head.partition(" in ")
            if not sep:
                raise self.fail(f"% {text}: a for line is 'for NAME in EXPRESSION:'", node.lineno, source)
            return "{% for " + target.strip() + " in " + self.checked(iterable, node.lineno, source) + " %}"
        return "{% " + keyword + " " + self.checked(head, node.lineno, source) + " %}"

    def code(self, text: str, line: int, source: str) -> str:
        """``<% %>``: assignments only (each ``{% set %}``)."""
        import textwrap

        try:
            module = ast.parse(textwrap.dedent(text))
        except SyntaxError as exc:
            raise self.fail(f"not Python: {exc.msg}", line + (exc.lineno or 1) - 1, source) from None
        body = textwrap.dedent(text)
        out = []
        for statement in module.body:
            where = line + statement.lineno - 1
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and \
                    isinstance(statement.value, ast.ListComp) and isinstance(statement.targets[0], ast.Name):
                out.append(self.comprehension(statement.targets[0].id, statement.value, body, where, source))
            elif isinstance(statement, ast.Assign) and len(statement.targets) == 1 and \
                    _names(statement.targets[0]):
                value = self.checked(ast.get_source_segment(body, statement.value) or "", where, source)
                target = ast.get_source_segment(body, statement.targets[0]) or ""
                out.append("{% set " + target + " = " + value + " %}")
            elif isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
                value = ast.get_source_segment(body, statement.value) or ""
                symbol = _OPERATORS.get(type(statement.op))
                if symbol is None:
                    raise self.fail("this assignment operator does not run in the sandbox", where, source)
                name = statement.target.id
                out.append("{% set " + name + " = " + name + " " + symbol + " (" + value + ") %}")
            else:
                raise self.fail("only assignments (name = expression) run in cloudherd's sandbox; "
                                f"not: {ast.get_source_segment(body, statement)}", where, source)
        return "".join(out)

    def comprehension(self, name: str, value: ast.ListComp, body: str, line: int, source: str) -> str:
        """``name = [EXPR for X in ITER if COND]`` as a Jinja loop gathering into a namespace (Jinja has no
        comprehensions; the sandbox's lists cannot be appended to)."""
        if len(value.generators) != 1 or value.generators[0].is_async:
            raise self.fail("a comprehension with one 'for' runs in the sandbox", line, source)
        loop = value.generators[0]

        def text(node: ast.AST) -> str:
            return self.checked(ast.get_source_segment(body, node) or "", line, source)

        head = "{% set ns_" + name + " = namespace(items=[]) %}{% for " + \
            (ast.get_source_segment(body, loop.target) or "") + " in " + text(loop.iter) + " %}"
        conditions = " and ".join(f"({text(c)})" for c in loop.ifs)
        gather = "{% set ns_" + name + ".items = ns_" + name + ".items + [" + text(value.elt) + "] %}"
        if conditions:
            gather = "{% if " + conditions + " %}" + gather + "{% endif %}"
        return head + gather + "{% endfor %}{% set " + name + " = ns_" + name + ".items %}"

    def checked(self, expression: str, line: int, source: str) -> str:
        """A Python expression that Jinja's parser takes as well (else a located error in the sandbox's words)."""
        import jinja2

        expression = self.expression(expression, line, source)
        try:
            jinja2.Environment().parse("{{ " + expression + " }}")
        except jinja2.TemplateSyntaxError as exc:
            raise self.fail(f"{expression}: this Python does not run in cloudherd's sandbox ({exc.message}); "
                            "write it with expressions, for/if lines and assignments", line, source) from None
        return expression

    # -- defs, namespaces, includes ------------------------------------------------------------------------

    def define(self, node: Any, source: str, prefix: str) -> str:
        signature = node.attributes.get("name", "")
        try:
            parsed = ast.parse(f"def {signature}: pass").body[0]
        except SyntaxError:
            raise self.fail(f"<%def name=\"{signature}\">: not a function signature", node.lineno, source) from None
        assert isinstance(parsed, ast.FunctionDef)
        name = prefix + parsed.name
        params = signature[signature.index("("):]
        body = _Out(flat=True)
        self.nodes(node.nodes, body, source, prefix)
        self.prelude.append("{% macro " + name + params + " %}" + "".join(body.parts) + "{% endmacro %}")
        return parsed.name

    def namespace(self, node: Any, source: str) -> None:
        attributes = node.attributes
        name = attributes.get("name")
        if "module" in attributes:
            if attributes["module"] != "ogc.db":
                raise self.fail(f"<%namespace module=\"{attributes['module']}\">: only OGC's ogc.db is known",
                                node.lineno, source)
            return  # `db` is in the template context already
        if "file" not in attributes or not (name or attributes.get("import")):
            raise self.fail("<%namespace> needs file= and name= (or import=)", node.lineno, source)
        text, shown = self.load(attributes["file"], node.lineno, source)
        tree = self.parse(text, shown)
        from mako import parsetree as p

        prefix = f"ns{self.files}_"
        defs = [self.define(inner, shown, prefix) for inner in tree.nodes if isinstance(inner, p.DefTag)]
        if name:
            members = ", ".join(f"{d}={prefix}{d}" for d in defs)
            self.prelude.append("{% set " + name + " = namespace(" + members + ") %}")
        if attributes.get("import"):
            wanted = defs if attributes["import"].strip() == "*" else \
                [d.strip() for d in attributes["import"].split(",")]
            for member in wanted:
                if member not in defs:
                    raise self.fail(f"{shown} has no def '{member}'", node.lineno, source)
                self.prelude.append("{% set " + member + " = " + prefix + member + " %}")

    def include(self, node: Any, source: str) -> str:
        text, shown = self.load(node.attributes.get("file", ""), node.lineno, source)
        tree = self.parse(text, shown)
        name = f"include{self.files}"
        body = _Out(flat=True)
        self.nodes(tree.nodes, body, shown, prefix=f"{name}_")
        self.prelude.append("{% macro " + name + "() %}" + "".join(body.parts) + "{% endmacro %}")
        return name

    def load(self, name: str, line: int, source: str) -> tuple[str, str]:
        """A namespace or include file, as Mako's TemplateLookup finds it (OGC: the script's folder, then its
        parent; a name starting with ``/`` is relative to each)."""
        self.files += 1
        if self.files > MAX_FILES:
            raise self.fail(f"more than {MAX_FILES} namespace and include files", line, source)
        if "${" in name or not name:
            raise self.fail(f"file=\"{name}\": a file name is needed (no expression)", line, source)
        relative = name.lstrip("/")
        for folder in ([] if name.startswith("/") else [self.folder]) + self.lookup:
            text = self.read(relative, folder)
            if text is not None:
                return text, posixpath.join(folder, relative)
        raise self.fail(f"{name} is not in {', '.join(self.lookup)}", line, source)


_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.FloorDiv: "//"}


def _names(target: ast.expr) -> bool:
    return isinstance(target, ast.Name) or (isinstance(target, ast.Tuple)
                                            and all(isinstance(e, ast.Name) for e in target.elts))


def translate(text: str, source: str, folder: str, read: Reader, lookup: Sequence[str],
              layouts: Mapping[str, Any]) -> str:
    """The Jinja template that renders as the Mako template ``text`` does (see the module's notes)."""
    return Translator(source, folder, read, lookup).run(text, layouts)


def mako_reader(spec: Spec, budget: Budget, *, inside: bool, root: Path) -> Callable[[str, str, Path], str]:
    """(text, shown, folder) -> the Mako script as the Jinja template it means, with the layouts' facts OGC's
    names read; namespace and include files found as OGC's lookup found them (the script's folder, then its
    parent), inside the spec's folder for a network spec, each read within the spec's ``budget``."""
    from cloudherd.spec import confine
    from cloudherd.spec.compat.ogc import layout_facts
    from cloudherd.spec.files import Where, read_text

    layouts = {name: layout_facts(spec, name) for name in spec.groups}

    def read(relative: str, folder: str) -> str | None:
        target = Path(folder) / relative
        where = Where(str(target))
        if inside:
            confine.check_inside(Path(os.path.realpath(target)), Path(os.path.realpath(root)), where, relative)
        if not target.is_file():
            return None
        return read_text(target, where, budget=budget)

    def run(text: str, shown: str, folder: Path) -> str:
        return translate(text, shown, str(folder), read, [str(folder), str(folder.parent)], layouts)

    return run
