"""OGC 2.x's ``ogc.actions`` over cloudherd: the same functions, arguments and results.

OGC makes a node with ``launch`` and runs its scripts with ``deploy``.  cloudherd never leaves a node half
made: ``launch`` adds one node to its layout's group (the spec's infrastructure, made on the first launch) and
that node's scripts run then; ``deploy`` afterwards runs only what has not succeeded there as it renders now
(nothing, right after a launch; a changed script, or all of them on a node where one failed).  A call that
fails logs the reason (``cloudherd.compat.ogc``) and returns OGC's failure value: ``-1`` for a launch, a result
that is ``== False`` for the others.  ``_async`` means "many at once", as in OGC (the calls block).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudherd.errors import CloudherdError, UsageError

if TYPE_CHECKING:
    from cloudherd.api import SyncClient
    from cloudherd.api.types import Node
    from cloudherd.compat.ogc.spec import Layout

log = logging.getLogger("cloudherd.compat.ogc")
_client: SyncClient | None = None
_lock = threading.Lock()


def client() -> SyncClient:
    """The client every call uses (cloudherd's database and settings, as the CLI has them), made once."""
    global _client
    with _lock:
        if _client is None:
            from cloudherd.api import SyncClient

            _client = SyncClient()
            atexit.register(_client.close)
        return _client


@dataclass(frozen=True)
class Result:
    """What a deploy, exec or teardown did on one node: ``== True`` when it succeeded (OGC's booleans), with the
    output and exit code OGC's action rows kept (``out``, ``error``, ``exit_code``)."""

    node: str
    ok: bool
    exit_code: int | None = None
    out: str = ""
    error: str = ""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, bool):
            return self.ok is other
        if isinstance(other, Result):
            return (self.node, self.ok, self.exit_code, self.out, self.error) == \
                (other.node, other.ok, other.exit_code, other.out, other.error)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.node, self.ok, self.exit_code))

    def __bool__(self) -> bool:
        return self.ok

    @property
    def passed(self) -> bool:
        return self.ok


# -- launch -----------------------------------------------------------------------------------------------


def launch(layout: Mapping[str, Any] | Layout) -> str | int:
    """Make one node of ``layout`` (``layout.as_dict()``, or the layout); its node id, or -1 (logged)."""
    try:
        files, name = _files_and_name(layout)
        return _grow(files, {name: 1})[0]
    except CloudherdError as exc:
        log.error("launch failed: %s", exc)
        return -1


def launch_async(layouts: Iterable[Layout | Mapping[str, Any]]) -> list[str | int]:
    """``scale`` nodes of each layout, all at once; their node ids (-1 for each that could not be made)."""
    wanted: dict[tuple[str, ...], dict[str, int]] = {}
    for layout in layouts:
        files, name = _files_and_name(layout)
        scale = int((layout.as_dict() if hasattr(layout, "as_dict") else layout).get("scale", 1))
        wanted.setdefault(files, {})[name] = wanted.get(files, {}).get(name, 0) + scale
    made: list[str | int] = []
    for files, counts in wanted.items():
        try:
            made += _grow(files, counts)
        except CloudherdError as exc:
            log.error("launch failed: %s", exc)
            made += [-1] * sum(counts.values())
    return made


def _files_and_name(layout: Mapping[str, Any] | Layout) -> tuple[tuple[str, ...], str]:
    values = layout.as_dict() if hasattr(layout, "as_dict") else dict(layout)
    files = values.get("spec")
    if not files or not values.get("name"):
        raise UsageError("a layout from SpecLoader.load(...) is needed (its as_dict() names the spec's files)")
    return tuple(files), str(values["name"])


def _grow(files: tuple[str, ...], counts: Mapping[str, int]) -> list[str]:
    """Add ``counts`` nodes to the named groups of the files' infrastructure (made when there is none): the ids
    of the nodes made, in group order."""
    from cloudherd.compat.ogc.spec import SpecLoader

    herd = client()
    spec = SpecLoader.load(list(files))
    active = next((i for i in herd.ls() if i.name == spec.name), None)
    before = {n.id for n in herd.infrastructure(active.id).live} if active else set()
    if active is None:
        infra_id = herd.up(list(files), counts={layout.name: counts.get(layout.name, 0) for layout in spec.layouts})
    else:
        infra_id = active.id
        for group, amount in counts.items():
            result = herd.scale(infra_id, group, f"+{amount}")
            if result.target - result.before < amount:
                raise UsageError(f"{group} grew by {result.target - result.before}, not {amount}{result.note}")
    infra = herd.infrastructure(infra_id)
    made = [n for n in infra.live if n.id not in before and n.group in counts]
    failed = [n for n in made if n.state != "ready"]
    if failed:
        raise UsageError(f"{failed[0].name}: {failed[0].reason or failed[0].state}")
    return [n.id for n in made]


# -- deploy, exec, exec_scripts ------------------------------------------------------------------------------


def deploy(node: Any) -> Result:
    """Run the node's layout scripts where they have not succeeded yet; ``== True`` when all did."""
    return deploy_async([node])[0]


def deploy_async(nodes: Iterable[Any]) -> list[Result]:
    """``deploy`` on every node at once (OGC skipped failed launches, ``-1``: so does this)."""
    refs = [_ref(n) for n in nodes if not (isinstance(n, int) and n <= 0)]
    if not refs:
        return []
    try:
        done = client().deploy_async(refs, skip_done=True)
    except CloudherdError as exc:
        log.error("deploy failed: %s", exc)
        return [Result(ref, False, error=str(exc)) for ref in refs]
    return [_node_result(n) for n in done]


def exec(node: Any, cmd: str) -> Result:
    """Run ``cmd`` on one node; ``out``, ``error`` and ``exit_code`` as it ended."""
    return _exec([_ref(node)], cmd)[0]


def exec_async(name: str | None, tag: str | None, cmd: str) -> list[Result]:
    """Run ``cmd`` on the nodes with tag ``tag``, or named ``name``, or every node; one result each."""
    return _exec(_select(name, tag), cmd)


def exec_scripts(node: Any, path: str) -> Result:
    """Run the scripts of ``path`` (a file or folder, templated as the layout's) on one node."""
    return _exec_scripts([_ref(node)], path)[0]


def exec_scripts_async(name: str | None, tag: str | None, path: str) -> list[Result]:
    return _exec_scripts(_select(name, tag), path)


def _exec(refs: Sequence[str], cmd: str) -> list[Result]:
    return _each(refs, "exec", lambda: [
        Result(r.node, r.ok, r.exit_code, r.stdout, r.stderr if r.error is None else r.error)
        for r in client().exec_async(list(refs), cmd)])


def _exec_scripts(refs: Sequence[str], path: str) -> list[Result]:
    return _each(refs, "exec_scripts", lambda: [_node_result(n) for n in client().exec_scripts_async(list(refs), path)])


def _each(refs: Sequence[str], what: str, call: Callable[[], list[Result]]) -> list[Result]:
    """``call``'s results; a call that cannot run at all fails every node named, logged once (OGC's way)."""
    if not refs:
        return []
    try:
        return call()
    except CloudherdError as exc:
        log.error("%s failed: %s", what, exc)
        return [Result(ref, False, error=str(exc)) for ref in refs]


# -- teardown and sync --------------------------------------------------------------------------------------


def teardown(name: str, force: bool = False, only_db: bool = False) -> Result:
    """Remove the node called ``name`` for good: its artifacts pulled, its teardown run, its machine gone.

    ``force`` is OGC's "skip the artifacts and the teardown", which cloudherd does not skip (a teardown that
    fails is a warning, never a leak); ``only_db`` (forget the node, leave its machine) is refused: cloudherd
    never forgets a machine it has not terminated (``cloudherd down --force`` forgets what cannot be)."""
    if only_db:
        log.error("teardown of %s: only_db is refused: cloudherd never forgets a running machine "
                  "(see cloudherd down --force)", name)
        return Result(name, False, error="only_db is refused")
    try:
        after = client().destroy(name)
    except CloudherdError as exc:
        log.error("teardown of %s failed: %s", name, exc)
        return Result(name, False, error=str(exc))
    gone = all(n.name != name for n in after.live)
    return Result(name, gone, error="" if gone else f"{name} is still there")


def teardown_async(names: Iterable[str], force: bool = False, only_db: bool = False) -> list[Result]:
    return [teardown(n, force=force, only_db=only_db) for n in list(names)]


def sync(layout: Layout, overrides: Mapping[str, Mapping[str, Any]]) -> list[Result]:
    """OGC's ``sync`` of one layout: ``{"action": "add"}`` makes (and deploys) a node, ``"remove"`` tears down
    the layout's newest node."""
    override = overrides[layout.name]
    if override["action"] == "add":
        made = launch(layout)
        return [deploy(made)] if made != -1 else [Result(layout.name, False, error="launch failed")]
    if override["action"] == "remove":
        spec_name = _spec_name(layout)
        infra = next((i for i in client().ls() if i.name == spec_name), None)
        nodes = [n for n in client().infrastructure(infra.id).live if n.group == layout.name] if infra else []
        if not nodes:
            return []
        return [teardown(max(nodes, key=lambda n: n.index).name)]
    raise UsageError(f"sync action '{override['action']}': OGC's are add and remove")


def sync_async(layouts: Iterable[Layout], overrides: Mapping[str, Mapping[str, Any]]) -> list[Result]:
    out: list[Result] = []
    for layout in layouts:
        for _ in range(abs(int(overrides[layout.name].get("remaining", 1)))):
            out += sync(layout, overrides)
    return out


# -- what was named --------------------------------------------------------------------------------------


def _ref(node: Any) -> str:
    """A node id or name, an OGC row (``id``/``instance_name``) or a cloudherd Node, as a node reference."""
    if isinstance(node, str):
        return node
    for attribute in ("id", "instance_name", "name"):
        value = getattr(node, attribute, None)
        if isinstance(value, str) and value:
            return value
    raise UsageError(f"not a node: {node!r}")


def _select(name: str | None, tag: str | None) -> list[str]:
    """Node ids by tag (OGC's ``tags.contains([tag])``), else by name, else every live node."""
    herd = client()
    found = []
    for summary in herd.ls():
        infra = herd.infrastructure(summary.id)
        tags = {g.name: {k if v == "true" else f"{k}={v}" for k, v in g.tags.items()} for g in infra.groups}
        for node in infra.live:
            if (tag and tag in tags.get(node.group, set())) or (not tag and name and node.name == name) or \
                    (not tag and not name):
                found.append(node.id)
    return found


def _node_result(node: Node) -> Result:
    ok = node.state == "ready"
    action = node.last_action
    return Result(node.name, ok, action.exit_code if action else None, action.stdout if action else "",
                  (action.stderr if action else "") if ok else (node.reason or ""))


def _spec_name(layout: Layout) -> str:
    from cloudherd.compat.ogc.spec import SpecLoader

    return SpecLoader.load(list(layout.files)).name
