"""Load a spec file: YAML with line numbers, ``${VAR}`` from the environment and ``.env``, validation.

Every problem becomes one :class:`~cloudherd.errors.SpecError` that names the file, the line and the
dotted path of the offending key, e.g. ``spec.yml:14: groups.web.count: must be an integer``.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cloudherd.errors import SpecError
from cloudherd.spec import confine
from cloudherd.spec.confine import Confinement
from cloudherd.spec.files import (
    MAX_FILE_BYTES,
    MAX_FOLDER_ENTRIES,
    MIB,
    Budget,
    Where,
    check_key,
    describe_os_error,
    entry_stat,
    environment,
    kind,
    read_text,
    spec_error,
)
from cloudherd.spec.foreign import NodeDefs, convert, merged_files
from cloudherd.spec.interpolate import InterpolationError, interpolate
from cloudherd.spec.locate import Loc, _dotted, _first_error, _key_line, _line_index, _line_of
from cloudherd.spec.mako import mako_reader
from cloudherd.spec.model import LENIENT, NAME_PATTERN, Group, InlineScript, Spec, _LocatedValueError
from cloudherd.spec.yamlsafe import parse_yaml

_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)


@dataclass(frozen=True)
class Script:
    """A script file of a group, read at load time so that a run never depends on the files moving."""

    name: str
    source: str  # path as written in the spec, for messages
    content: str


@dataclass
class LoadedSpec:
    """A validated spec plus what it brought along: scripts, environment and the secrets to mask."""

    spec: Spec
    path: Path
    raw_text: str
    env: dict[str, str]
    scripts: dict[str, list[Script]] = field(default_factory=dict)
    teardown: dict[str, Script | None] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    within: Confinement | None = None  # a network spec's confinement, kept with its infrastructure
    # a group's cloud-config where its machines boot (a cloud): first-boot user data, a template per node
    boot: dict[str, Script | None] = field(default_factory=dict)
    # what loads but will not do all the file says (a foreign file's key with no full equivalent): located
    warnings: list[SpecError] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def group(self, name: str) -> Group:
        return self.spec.groups[name]

    def variables_for(self, group_name: str) -> dict[str, Any]:
        """The spec's variables with the group's own over them (what the group's templates see)."""
        group = self.spec.groups.get(group_name)
        return {**self.spec.variables, **(group.variables if group is not None else {})}

    def login(self, group_name: str) -> tuple[str | None, Path | None]:
        """The group's login user and private key file: its own ``ssh``, else the spec's (None: the default)."""
        own = self.spec.groups[group_name].ssh
        user = (own.user if own else None) or self.spec.ssh.user
        key = (own.key if own else None) or self.spec.ssh.key
        if not key:
            return user, None
        path = Path(key).expanduser()
        return user, path if path.is_absolute() else self.path.parent / path

    def stored(self, group_name: str) -> dict[str, Any]:
        """The group's scripts, teardown and boot data as kept with a release (read back by :meth:`restore`)."""
        def one(script: Script | None) -> dict[str, str] | None:
            return {"name": script.name, "source": script.source, "content": script.content} if script else None

        return {"scripts": [one(s) for s in self.scripts.get(group_name, [])],
                "teardown": one(self.teardown.get(group_name)), "boot": one(self.boot.get(group_name))}

    def restore(self, group_name: str, stored: Mapping[str, Any]) -> None:
        """Put back what :meth:`stored` kept (an older release has no ``boot``: none)."""
        def one(item: Mapping[str, str] | None) -> Script | None:
            return Script(item["name"], item["source"], item["content"]) if item else None

        self.scripts[group_name] = [Script(s["name"], s["source"], s["content"]) for s in stored.get("scripts") or []]
        self.teardown[group_name] = one(stored.get("teardown"))
        self.boot[group_name] = one(stored.get("boot"))


def load_spec(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, format: str | None = None,
              node_defs: NodeDefs = None, within: Confinement | None = None) -> LoadedSpec:
    """Read, substitute, validate and resolve the scripts of the spec at ``path``.

    OGC layout files and Occopus descriptions are read too: ``format`` forces one (``native``, ``ogc``,
    ``occopus``), else it is detected; ``node_defs`` are the Occopus node definitions imported earlier.
    ``within`` confines a spec that came over the network (see :mod:`cloudherd.spec.confine`).
    """
    spec_path = Path(path)
    display = str(path)
    budget = Budget()
    text = read_text(spec_path, Where(display), budget=budget, yaml=True, streams=True)
    native, converted = convert(text, display, format=format, node_defs=node_defs,
                                base=spec_path.parent if within is None else None, budget=budget)
    return _load_mapped(native, converted, spec_path, environ=environ, budget=budget, within=within)


def load_specs(paths: Sequence[str | os.PathLike[str]], *, environ: Mapping[str, str] | None = None,
               format: str | None = None, node_defs: NodeDefs = None, within: Confinement | None = None
               ) -> LoadedSpec:
    """One spec from several files: OGC layout files merge left to right (later keys win, ``{}`` removes a
    layout); one file of any format is :func:`load_spec`."""
    if len(paths) == 1:
        return load_spec(paths[0], environ=environ, format=format, node_defs=node_defs, within=within)
    budget = Budget()
    first = Path(paths[0])
    native, converted = merged_files(paths, format=format, budget=budget)
    return _load_mapped(native, converted, first, environ=environ, budget=budget, within=within)


def _load_mapped(text: str, converted: Any, path: Path, *, environ: Mapping[str, str] | None,
                 budget: Budget, within: Confinement | None) -> LoadedSpec:
    """Load native text; an error in a converted file's native form points at the foreign file's line."""
    display = str(path)

    def mapped(exc: SpecError) -> SpecError:
        if converted is None or exc.file != display:
            return exc
        return SpecError(display, converted.line_for(exc.path) or exc.line, exc.path, exc.message)

    try:
        loaded = _load(text, path, environ=environ, strict_env=True, read_scripts=True, budget=budget, within=within)
    except SpecError as exc:
        raise mapped(exc) from None
    loaded.warnings = [*(converted.warnings if converted is not None else []), *map(mapped, loaded.warnings)]
    return loaded


def load_spec_text(
    text: str, path: Path, *, environ: Mapping[str, str] | None = None, strict_env: bool = True,
    read_scripts: bool = True, within: Confinement | None = None,
) -> LoadedSpec:
    """Like :func:`load_spec` for text already read (``path`` names it and anchors relative files).

    ``strict_env=False`` leaves unknown ``${VAR}`` as written instead of failing: ``down`` uses it to
    re-read the snapshot of a spec whose environment is gone (with ``read_scripts=False``, as the
    scripts were stored when it came up; the files the spec names are then not looked at either).
    It also takes what older, laxer versions took (``count: "3"``, ``count: true``, ``min_count`` above
    ``count``), so that an infrastructure made by one can still be torn down.
    """
    if len(text) > MAX_FILE_BYTES:
        raise spec_error(str(path), None, "", f"larger than {MAX_FILE_BYTES // MIB} MiB: "
                         f"a spec and each of its files are at most {MAX_FILE_BYTES // MIB} MiB")
    return _load(text, path, environ=environ, strict_env=strict_env, read_scripts=read_scripts, budget=Budget(),
                 within=within)


def _load(
    text: str, path: Path, *, environ: Mapping[str, str] | None, strict_env: bool, read_scripts: bool,
    budget: Budget, within: Confinement | None,
) -> LoadedSpec:
    display = str(path)
    try:
        return _load_checked(text, path, environ=environ, strict_env=strict_env, read_scripts=read_scripts,
                             budget=budget, within=within)
    except RecursionError:  # belt and braces: parse_yaml bounds nesting well below Python's limit
        raise spec_error(display, None, "", "nested too deeply") from None


def _load_checked(
    text: str, path: Path, *, environ: Mapping[str, str] | None, strict_env: bool, read_scripts: bool,
    budget: Budget, within: Confinement | None,
) -> LoadedSpec:
    display = str(path)
    tree = parse_yaml(text, display)
    if not isinstance(tree, CommentedMap):
        raise spec_error(display, 1, "", "a spec must be a mapping with at least 'name' and 'groups'")
    lines = _line_index(tree)

    def line_of(loc: Loc) -> int | None:
        return _line_of(loc, lines)

    if within is not None:  # a network spec: the server's clouds, no files or environment of the server's
        confine.refuse_keys(tree, within, display, line_of)
        environ = {}
    env = environment(path.parent, environ, display, budget)
    secrets: set[str] = set()
    data = _plain(tree, (), env, lines, display, secrets, strict_env)
    if within is not None and isinstance(data, dict):
        data["providers"] = confine.offered_providers(within)
    try:
        _check_group_names(data)
        spec = Spec.model_validate(data, context={LENIENT: True} if not strict_env else None)
    except ValidationError as exc:
        raise _first_error(exc, lines, display, data) from None
    except _LocatedValueError as exc:
        raise spec_error(display, _line_of(exc.loc, lines), _dotted(exc.loc), exc.message) from None
    if within is not None:
        confine.check_groups(spec.groups, within, display, line_of)
    loaded = LoadedSpec(spec=spec, path=path, raw_text=text, env=env, secrets=secrets, within=within)
    secrets.update(v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 4)
    # a group's env entry named like a secret is one, also when written in the spec as a literal
    secrets.update(v for g in spec.groups.values() for k, v in g.env.items() if _SECRET_NAME.search(k) and len(v) >= 4)
    if not read_scripts:
        return loaded
    if spec.ssh.key:
        check_key(path.parent, spec.ssh.key, Where(display, _line_of(("ssh", "key"), lines), "ssh.key"), budget)
    mako = mako_reader(spec, budget, inside=within is not None, root=path.parent) if spec.templates == "mako" \
        else None
    for group_name, group in spec.groups.items():
        if group.ssh and group.ssh.key:
            check_key(path.parent, group.ssh.key, Where(display, _line_of(("groups", group_name, "ssh", "key"), lines),
                                                        f"groups.{group_name}.ssh.key"), budget)
        loaded.scripts[group_name] = [
            script
            for index, entry in enumerate(group.scripts)
            for script in _read_scripts(path.parent, entry, ("groups", group_name, "scripts", index), lines, display,
                                        budget, inside=within is not None,
                                        mako=mako)
        ]
        if group.user_data:
            _user_data(loaded, group_name, path.parent, lines, budget, inside=within is not None)
        if group.teardown:
            loc: Loc = ("groups", group_name, "teardown")
            found = _read_scripts(path.parent, group.teardown, loc, lines, display, budget, one_file=True,
                                  inside=within is not None, mako=mako)
            loaded.teardown[group_name] = found[0]
            # a teardown inside the scripts folder (OGC's scripts/teardown) is not also a script
            loaded.scripts[group_name] = [s for s in loaded.scripts[group_name] if s.source != found[0].source]
        else:
            loaded.teardown[group_name] = None
    return loaded


def _plain(
    node: Any, loc: Loc, env: Mapping[str, str], lines: Mapping[Loc, int], display: str,
    secrets: set[str], strict: bool,
) -> Any:
    """Plain Python data from the YAML tree, with ``${VAR}`` / ``${VAR:-default}`` replaced.

    ruamel's scalar subclasses become plain ``int`` / ``float`` / ``str``; keys must be text (or whole
    numbers, taken as text): a ``null``, ``true`` or list key is an error at its line, as are two keys
    that are the same text (``1`` and ``"1"``).
    """
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                shown = "null" if key is None else "true/false" if isinstance(key, bool) else f"a {type(key).__name__}"
                raise spec_error(display, _key_line(node, key), _dotted(loc),
                                 f"a key must be text, not {shown} (quote it)")
            name = str(key)
            if name in out:
                raise spec_error(display, _key_line(node, key), _dotted((*loc, name)), "duplicate key")
            out[name] = _plain(value, (*loc, name), env, lines, display, secrets, strict)
        return out
    if isinstance(node, CommentedSeq):
        return [_plain(v, (*loc, i), env, lines, display, secrets, strict) for i, v in enumerate(node)]
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, datetime.date):  # also datetime: YAML timestamps, left for the models to refuse
        return node
    if not isinstance(node, str):
        raise spec_error(display, _line_of(loc, lines), _dotted(loc), f"unsupported value ({type(node).__name__})")

    def remember(name: str, value: str) -> None:
        if _SECRET_NAME.search(name) and len(value) >= 4:
            secrets.add(value)

    try:
        value = interpolate(str(node), env, strict=strict, on_value=remember)
    except InterpolationError as exc:
        raise spec_error(display, _line_of(loc, lines), _dotted(loc), exc.message) from None
    return value


def _check_group_names(data: Any) -> None:
    groups = data.get("groups") if isinstance(data, dict) else None
    if isinstance(groups, dict):
        for name in groups:
            if not re.match(NAME_PATTERN, name):
                raise _LocatedValueError(
                    ("groups", name),
                    "group names are lower-case letters, digits and '-', at most 40 characters",
                )


def _user_data(loaded: LoadedSpec, group_name: str, base: Path, lines: Mapping[Loc, int], budget: Budget, *,
               inside: bool) -> None:
    """A group's ``user_data`` (py-smartdc's boot script, Occopus' cloud-config): inline text or a file.

    A ``#cloud-config`` goes as first-boot user data where the group's machines boot (a cloud: every
    cloud-init module works); on ``local`` nodes, which do not boot, it is rendered to the group's first
    script, and what a script cannot do is refused or warned about, located.  Other text is the first
    script, run once per node."""
    from cloudherd.spec import cloudinit

    display = str(loaded.path)
    group = loaded.group(group_name)
    value = str(group.user_data)
    loc: Loc = ("groups", group_name, "user_data")
    where = Where(display, _line_of(loc, lines), _dotted(loc))
    inline = "\n" in value or value.startswith(("#!", "#cloud-config"))
    if inline:
        script = Script("user-data", f"{display}#user_data", value)
    else:
        script = _read_scripts(base, value, loc, lines, display, budget, one_file=True, inside=inside)[0]
    if not script.content.lstrip().startswith("#cloud-config"):
        loaded.scripts[group_name].insert(0, Script("user-data", script.source, script.content))
        return

    def fail(message: str) -> SpecError:
        return where.error(f"cloud-config: {message}")

    config = cloudinit.parse(script.content, fail)
    kinds = _provider_types(loaded.spec, group)
    if kinds == {"local"}:
        refused, ignored = cloudinit.local_problems(config)
        if refused:
            raise fail(refused[0])
        loaded.warnings += [fail(message) for message in ignored]
        loaded.scripts[group_name].insert(0, Script("user-data", script.source, cloudinit.as_script(config, fail)))
    elif "local" in kinds:
        raise fail("the group is placed on local and on cloud providers: a cloud-config is boot data on a cloud "
                   "and a script on a local node; give the group one kind")
    else:
        loaded.boot[group_name] = Script("user-data", script.source, script.content)


def _provider_types(spec: Spec, group: Group) -> set[str]:
    names = [p.provider for p in group.placement] or [group.provider]
    return {spec.providers[n].type if n in spec.providers else n for n in names}


def scripts_from(loaded: LoadedSpec, entry: str, base: Path) -> list[Script]:
    """A file or folder of scripts named at a call (OGC's ``exec_scripts``), read as the spec's own scripts are
    (in its template language), relative to ``base``."""
    budget = Budget()
    mako = mako_reader(loaded.spec, budget, inside=False, root=base) if loaded.spec.templates == "mako" else None
    return _read_scripts(base, entry, ("scripts",), {}, entry, budget, mako=mako)


def _read_scripts(
    base: Path, entry: str | InlineScript, loc: Loc, lines: Mapping[Loc, int], display: str, budget: Budget, *,
    one_file: bool = False, inside: bool = False, mako: Callable[[str, str, Path], str] | None = None,
) -> list[Script]:
    """A file is one script; a folder is its files in name order (hidden files and subfolders skipped).

    Every problem is located: at the spec line naming the entry (missing, a link loop, a FIFO, a folder
    without scripts, a folder where one file is wanted…) or at the line inside a script (not UTF-8, a
    NUL byte, a template syntax error).  ``inside``: every file must resolve inside ``base`` (a network spec).
    """
    where = Where(display, _line_of(loc, lines), _dotted(loc))
    if isinstance(entry, InlineScript):  # written in the spec: its lines are the spec's
        content = mako(entry.content, f"{display}#{entry.name}", base) if mako else entry.content
        try:
            jinja2.Environment().parse(content)
        except jinja2.TemplateSyntaxError as exc:
            raise where.error(f"{entry.name}:{exc.lineno}: template error: {exc.message}") from None
        return [Script(entry.name, f"{display}#{entry.name}", content)]
    target = base / (entry if inside else os.path.expanduser(entry))
    if inside:  # before anything is looked at: not even whether a server's file exists is said
        confine.check_inside(Path(os.path.realpath(target)), Path(os.path.realpath(base)), where, entry)
    info = entry_stat(target, where, entry)
    if info is None:
        raise where.error(f"no such file or folder: {entry}")
    if stat.S_ISDIR(info.st_mode):
        if one_file:
            raise where.error(f"{entry} is a folder: name one file")
        files = _folder_scripts(target, entry, where)
        if not files:
            raise where.error(f"{entry}: the folder has no scripts (hidden files and subfolders are skipped)")
    else:
        files = [target]
    try:
        root = base.resolve()
    except (OSError, RuntimeError) as exc:
        raise where.error(f"cannot resolve the spec's folder {base}: {exc}") from None
    scripts = []
    for file in files:
        try:
            real = file.resolve()
        except (OSError, RuntimeError):
            real = Path(os.path.abspath(file))
        if inside:
            confine.check_inside(real, root, where, entry)
        source = str(real.relative_to(root)) if real.is_relative_to(root) else str(real)
        shown = str(Path(display).parent / source) if not os.path.isabs(source) else source
        content = read_text(file, where, shown=shown, budget=budget)
        if mako is not None:
            content = mako(content, shown, file.parent)
        try:
            jinja2.Environment().parse(content)
        except jinja2.TemplateSyntaxError as exc:
            raise spec_error(shown, exc.lineno, "", f"template error: {exc.message}") from None
        except RecursionError:
            raise spec_error(shown, None, "", "template error: nested too deeply") from None
        scripts.append(Script(name=file.name, source=source, content=content))
    return scripts


def _folder_scripts(folder: Path, entry: str, where: Where) -> list[Path]:
    """The script files of a scripts folder, in name order; a broken link or an odd file is an error."""
    try:
        with os.scandir(folder) as listing:
            names = []
            for item in listing:
                names.append(item.name)
                if len(names) > MAX_FOLDER_ENTRIES:
                    raise where.error(f"{entry}: more than {MAX_FOLDER_ENTRIES} entries in one scripts folder")
    except OSError as exc:
        raise where.error(f"{entry}: cannot list the folder: {describe_os_error(exc)}") from None
    files = []
    for name in sorted(names):
        if name.startswith("."):
            continue
        path = folder / name
        shown = os.path.join(entry, name)
        info = entry_stat(path, where, shown)
        if info is None:  # removed while we looked
            continue
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            raise where.error(f"{shown}: is {kind(info.st_mode)}, not a script file")
        files.append(path)
    return files
